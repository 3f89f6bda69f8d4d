"""Frame -> metric depth (+ answers), with the frame's prefill kept for later questions.

:class:`DepthVLMPipeline` owns the model, tokenizer and head runtime. ``process_frame`` runs the
vision tower and the LLM prefill over the image prefix once, turns the result into a metric
depth map at the input resolution, and returns a :class:`FrameContext` holding the KV cache.
``answer`` continues that cache with the question and decodes greedily: no second vision pass
and no re-prefill of image tokens. The pipeline holds no ROS types and is used from one thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .camera import RESIZE_MODES, TOKEN_PIXELS, Intrinsics, ResizePlan, vision_patching
from .cameras import parse_camera_names
from .config import DepthVLMConfig
from .errors import InputError, ModelLoadError
from .folders import folder_resize_mode, read_meta, read_preprocessor, resolve_model_path
from .model import DepthVLMForConditionalGeneration, load_depthvlm
from .preprocess import ModelImage, prepare_image, release_pixel_limits

__all__ = ["DepthVLMPipeline", "FrameContext", "FrameResult", "AnswerResult", "Prediction", "split_cache", "truncate_cache",
           "resolve_device", "resolve_dtype"]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; a missing GPU is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {name} requested but CUDA is not available")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


@dataclass
class FrameContext:
    """A processed frame's prefill: everything needed to answer questions about it."""

    cache: object
    prefix_len: int
    next_position: int
    intrinsics: Intrinsics
    depth: np.ndarray


@dataclass
class FrameResult:
    """Output of :meth:`DepthVLMPipeline.process_frame`.

    Attributes:
        depth: (H, W) float32 metres at the input resolution, NaN where invalid.
        intrinsics: intrinsics of ``depth`` (those of the input image).
        plan: how the image was resized for the model.
        timings: seconds per stage (preprocess, vision_prefill, head, postprocess, total).
        context: prefill kept for questions (None when not requested).
        batch_size: frames in the model pass that produced it (1: alone).
    """

    depth: np.ndarray
    intrinsics: Intrinsics
    plan: ResizePlan
    timings: dict[str, float]
    context: FrameContext | None
    batch_size: int = 1


@dataclass
class AnswerResult:
    """A decoded answer: text, its tokens, and latency (first token and total, seconds)."""

    text: str
    token_ids: list[int]
    first_token_s: float
    total_s: float
    first_logits: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class Prediction:
    """Depth and (when a question was asked) the answer, from one forward pass."""

    depth: np.ndarray
    answer: str | None
    frame: FrameResult
    answer_result: AnswerResult | None = None


def split_cache(cache, rows: int) -> list:
    """One DynamicCache per batch row of ``cache`` (copies, so each frame's cache is its own).

    Built with ``DynamicCache.update``, the constructor-independent way every transformers 5.x
    release fills a cache.
    """
    from transformers import DynamicCache

    parts = []
    for row in range(rows):
        part = DynamicCache()
        for layer_idx, layer in enumerate(cache.layers):
            part.update(layer.keys[row:row + 1].clone(), layer.values[row:row + 1].clone(),
                        layer_idx)
        parts.append(part)
    return parts


def truncate_cache(cache, length: int) -> None:
    """Cut a DynamicCache back to its first ``length`` positions.

    ``DynamicCache.crop``'s argument changed meaning across transformers 5.x releases, so the
    per-layer tensors are sliced directly (the same in every release we support).
    """
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys[..., :length, :]
            layer.values = layer.values[..., :length, :]


def _folder_token_pixels(folder) -> int:
    """Token size of a folder's model from its config.json, for the estimate made before the
    load; a config.json that cannot be read is the folder check's to report, so Qwen3-VL's."""
    import json

    from .camera import token_pixels_of

    try:
        return token_pixels_of(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, TypeError, AttributeError, InputError):
        return TOKEN_PIXELS


class DepthVLMPipeline:
    """Model + tokenizer + preprocessing + head runtime; the whole ROS-free inference path.

    Args:
        model: a loaded :class:`DepthVLMForConditionalGeneration` (eval mode).
        tokenizer: its tokenizer.
        config: pipeline settings.
        preprocessor: the folder's image-processor settings (``image_mean``, ``image_std``,
            ``size`` for the release resize).
        head_runtime: callable ``(ds0, ds1, ds2, llm, out_hw) -> depth`` replacing the torch
            head (ONNX Runtime or TensorRT); None runs ``model.depth_head``.
        head_backend_name: name of the head runtime, for logs and diagnostics.
        model_canonical_fx: the model folder's canonical focal (used when the config's is 0).
        model_resize_mode: the model folder's resize convention (``release`` or ``metric``,
            see :func:`~depthvlm_ros.core.folders.folder_resize_mode`), used when the config
            says ``auto``; None (a model built in memory, i.e. ours) means ``metric``.
    """

    def __init__(self, model: DepthVLMForConditionalGeneration, tokenizer, config: DepthVLMConfig,
                 preprocessor: dict | None = None, head_runtime: Callable | None = None,
                 head_backend_name: str = "torch", model_canonical_fx: float | None = None,
                 model_resize_mode: str | None = None) -> None:
        config.validate()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        #: Focal of the canonical camera: the config's, else the model folder's, else 1000.
        self.canonical_fx = float(config.canonical_fx or model_canonical_fx or 1000.0)
        #: Resize convention in use (``auto`` resolved): ``release`` or ``metric``.
        self.resize_mode = (config.resize_mode if config.resize_mode != "auto"
                            else model_resize_mode or "metric")
        if self.resize_mode not in RESIZE_MODES:
            raise ModelLoadError(f"resize mode {self.resize_mode!r} is not one of "
                                 f"{', '.join(RESIZE_MODES)}")
        pre = preprocessor or {}
        self.image_mean = tuple(pre.get("image_mean", (0.5, 0.5, 0.5)))
        self.image_std = tuple(pre.get("image_std", (0.5, 0.5, 0.5)))
        #: The image processor's area limits (min_pixels, max_pixels), for the release resize.
        self.pixel_limits = release_pixel_limits(pre)
        self.head_runtime = head_runtime or model.depth_head
        self.head_backend_name = head_backend_name
        #: What ``depthvlm check`` found before loading (set by :meth:`from_config`).
        self.check_report = None
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        mc = model.config
        #: Vision patch and merge of the model: one LLM token is patch x merge pixels a side.
        self.patch_size, self.merge_size = vision_patching(mc)
        self.image_token_id = mc.image_token_id
        self.eos_ids = {i for i in (tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                    tokenizer.convert_tokens_to_ids("<|endoftext|>"))
                        if isinstance(i, int) and i >= 0}
        head = (f"<|im_start|>system\n{config.system_prompt}<|im_end|>\n"
                "<|im_start|>user\n<|vision_start|>")
        self._prefix_head = tokenizer(head, add_special_tokens=False).input_ids
        self._vision_end = mc.vision_end_token_id
        self._suffix_tail = tokenizer("<|im_end|>\n<|im_start|>assistant\n",
                                      add_special_tokens=False).input_ids

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: DepthVLMConfig) -> "DepthVLMPipeline":
        """Load the model named by ``config.model_path`` on the configured device and dtype."""
        from transformers import AutoTokenizer

        from .check.memory import default_image_tokens

        from .check import validate_model_folder

        config.validate()
        folder = resolve_model_path(config.model_path)
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        image_tokens = default_image_tokens(config.max_image_tokens, _folder_token_pixels(folder))
        # Every camera holds its own frame_history.
        cameras = len(parse_camera_names(config.cameras))
        memory = dict(image_tokens=image_tokens, frame_history=config.frame_history * cameras,
                      batch_frames=config.frames_per_pass)
        # What `depthvlm check` reports, from file headers only (seconds for a 4B folder): a
        # wrong shape, tokenizer, processor, depthvlm_meta.json or not enough memory (the KV
        # cache of the frames this pipeline holds included) fails here, before the slow load.
        report = validate_model_folder(folder, dtype=config.dtype, device=str(device), **memory)
        report.raise_if_failed()
        mode = folder_resize_mode(folder) if config.resize_mode == "auto" else None
        model = load_depthvlm(folder, dtype=dtype, device=device, **memory)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                      trust_remote_code=False)
        except Exception as exc:  # noqa: BLE001 - one clear line for a broken tokenizer
            raise ModelLoadError(f"cannot load the tokenizer of {folder}: {exc}") from None
        # Without tokenizer files transformers still returns a tokenizer (a one-token vocabulary
        # mapping everything to 0), and depth and answers would silently be computed from a
        # garbage prompt. The image/vision tokens must be the ids the model was built with.
        for token, want in (("<|image_pad|>", model.config.image_token_id),
                            ("<|vision_start|>", model.config.vision_start_token_id),
                            ("<|vision_end|>", model.config.vision_end_token_id)):
            got = tokenizer.convert_tokens_to_ids(token)
            if got != want:
                raise ModelLoadError(f"the tokenizer of {folder} does not match the model: "
                                     f"{token} is id {got}, config.json says {want} "
                                     "(tokenizer.json missing or from another model?)")
        runtime, name = None, "torch"
        if config.head_backend != "torch":
            from .export import select_head_runtime  # optional backends, imported on demand

            runtime, name = select_head_runtime(model, config, folder)
        meta_fx = read_meta(folder).get("canonical_fx")
        pipeline = cls(model, tokenizer, config, read_preprocessor(folder), runtime, name,
                       float(meta_fx) if meta_fx else None, mode)
        pipeline.check_report = report  # its warnings are worth a log line in the caller
        return pipeline

    # ----------------------------------------------------------------------------------------
    def prepare(self, rgb: np.ndarray, intrinsics: Intrinsics) -> ModelImage:
        """The shared preprocessing with this pipeline's settings (resize mode included)."""
        c = self.config
        return prepare_image(rgb, intrinsics, self.canonical_fx, c.max_image_tokens,
                             c.min_image_tokens, self.image_mean, self.image_std,
                             resize_mode=self.resize_mode, pixel_limits=self.pixel_limits,
                             device=self.device, patch_size=self.patch_size,
                             merge_size=self.merge_size)

    def prompt_ids(self, num_image_tokens: int, question: str | None = None) -> list[int]:
        """Token ids of the prefix (up to ``<|vision_end|>``), plus the question turn if given."""
        ids = self._prefix_head + [self.image_token_id] * num_image_tokens + [self._vision_end]
        if question is not None:
            ids = ids + self.question_ids(question)
        return ids

    def question_ids(self, question: str) -> list[int]:
        """Tokens of the user's question and the assistant turn opener.

        Special-token text typed by a user (``<|im_end|>``...) is split into plain text, so a
        question cannot close its turn or forge a system message.
        """
        q = self.check_question(question)
        body = self.tokenizer(q, add_special_tokens=False, split_special_tokens=True).input_ids
        return body + self._suffix_tail

    def check_question(self, question: str) -> str:
        if not isinstance(question, str):
            raise InputError("question must be a string")
        q = question.strip()
        if not q:
            raise InputError("question is empty")
        if len(q) > self.config.max_query_chars:
            raise InputError(f"question has {len(q)} characters, limit {self.config.max_query_chars}")
        return q

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def process_frame(self, rgb: np.ndarray, intrinsics: Intrinsics,
                      keep_context: bool = True) -> FrameResult:
        """Metric depth for one frame; keeps the prefill for questions when ``keep_context``.

        Raises:
            InputError: the image or its intrinsics cannot be used.
        """
        (result,) = self.process_frames([(rgb, intrinsics)], keep_context)
        if isinstance(result, InputError):
            raise result
        return result

    @torch.inference_mode()
    def process_frames(self, frames: Sequence[tuple[np.ndarray, Intrinsics]],
                       keep_context: bool = True) -> list[FrameResult | InputError]:
        """Metric depth for several frames (of several cameras), batched where sizes agree.

        Frames whose model images have the same size share one pass through the vision tower,
        the LLM prefill and the head (one row each); others run in passes of their own. Rows
        do not interact, so each frame's depth and context equal those of
        :meth:`process_frame` on it alone up to float rounding. Each context gets its own KV
        cache, so questions about one frame never see another.

        Args:
            frames: ``(rgb, intrinsics)`` pairs.
            keep_context: keep each frame's prefill for questions.

        Returns:
            One entry per frame, in order: its :class:`FrameResult`, or the
            :class:`InputError` that kept it out (the other frames still run). The
            vision/prefill and head timings of a batched frame are those of its whole pass.
        """
        results: list[FrameResult | InputError] = [None] * len(frames)  # type: ignore[list-item]
        groups: dict[tuple[int, int], list[tuple[int, ModelImage, float]]] = {}
        for index, (rgb, intrinsics) in enumerate(frames):
            t0 = time.perf_counter()
            try:
                mi = self.prepare(rgb, intrinsics)
            except InputError as exc:
                results[index] = exc
                continue
            size = (mi.plan.model_height, mi.plan.model_width)
            groups.setdefault(size, []).append((index, mi, time.perf_counter() - t0))
        for members in groups.values():
            for index, result in self._run_batch(members, frames, keep_context):
                results[index] = result
        return results

    def _run_batch(self, members: list[tuple[int, ModelImage, float]],
                   frames: Sequence[tuple[np.ndarray, Intrinsics]], keep_context: bool):
        """One pass for prepared frames of one model size; yields ``(index, FrameResult)``."""
        n = len(members)
        plan = members[0][1].plan
        ids = torch.tensor([self.prompt_ids(plan.num_tokens)] * n, device=self.device)
        pixel_values = torch.cat([mi.pixel_values for _, mi, _ in members]).to(self.device,
                                                                                self.dtype)
        grid = torch.cat([mi.image_grid_thw for _, mi, _ in members]).to(self.device)
        t1 = self._sync()
        enc = self.model.encode(ids, pixel_values, grid, use_cache=keep_context)
        t2 = self._sync()
        ds = enc.deepstack
        depth_model = self.head_runtime(ds[0], ds[1], ds[2], enc.image_hidden,
                                        (plan.model_height, plan.model_width))
        t3 = self._sync()
        caches = [enc.cache] if n == 1 or not keep_context else split_cache(enc.cache, n)
        for row, (index, mi, prep_s) in enumerate(members):
            t_row = time.perf_counter()
            intrinsics = frames[index][1]
            depth = self._postprocess(depth_model[row:row + 1], mi.plan, intrinsics)
            post_s = time.perf_counter() - t_row
            context = None
            if keep_context:
                context = FrameContext(caches[row], ids.shape[1], enc.next_position,
                                       intrinsics, depth)
            timings = {"preprocess": prep_s, "vision_prefill": t2 - t1, "head": t3 - t2,
                       "postprocess": post_s, "total": prep_s + (t3 - t1) + post_s}
            yield index, FrameResult(depth, intrinsics, mi.plan, timings, context, n)

    def _postprocess(self, depth_model: torch.Tensor, plan: ResizePlan,
                     intrinsics: Intrinsics) -> np.ndarray:
        # depth_scale is exactly 1 for a release plan within the token budget: the release
        # uses the model's output as metres, and a multiplication by 1.0 changes no value.
        d = depth_model.float() * plan.depth_scale
        if d.shape[-2:] != (intrinsics.height, intrinsics.width):
            d = F.interpolate(d[:, None], size=(intrinsics.height, intrinsics.width),
                              mode="bilinear", align_corners=False)[:, 0]
        out = d[0].cpu().numpy().astype(np.float32, copy=False)
        c = self.config
        out[~((out >= c.min_depth) & (out <= c.max_depth))] = np.nan
        return out

    @torch.inference_mode()
    def answer(self, context: FrameContext, question: str,
               max_new_tokens: int | None = None) -> AnswerResult:
        """Answer a question about a processed frame by continuing its cached prefill.

        The cache is cropped back to the prefix afterwards, so questions are independent and
        the context can serve any number of them.
        """
        if context is None or context.cache is None:
            raise InputError("this frame was processed without keeping its context")
        q_ids = torch.tensor([self.question_ids(question)], device=self.device)
        limit = max_new_tokens or self.config.max_new_tokens
        t0 = time.perf_counter()
        tokens: list[int] = []
        first_logits = None
        first_s = 0.0
        try:
            logits = self.model.decode_step(q_ids, context.cache, context.next_position)[:, -1]
            position = context.next_position + q_ids.shape[1]
            for step in range(limit):
                if step == 0:
                    first_logits = logits[0].float().cpu()
                nxt = int(torch.argmax(logits[0]))
                if step == 0:
                    first_s = self._sync() - t0
                if nxt in self.eos_ids:
                    break
                tokens.append(nxt)
                if step + 1 == limit:
                    break
                logits = self.model.decode_step(
                    torch.tensor([[nxt]], device=self.device), context.cache, position)[:, -1]
                position += 1
        finally:
            truncate_cache(context.cache, context.prefix_len)
        total = self._sync() - t0
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return AnswerResult(text, tokens, first_s, total, first_logits)

    def predict(self, rgb: np.ndarray, intrinsics: Intrinsics,
                question: str | None = None) -> Prediction:
        """Depth and, if ``question`` is given, its answer, from one vision pass and one prefill."""
        if question is not None:
            self.check_question(question)  # fail before spending compute on the frame
        frame = self.process_frame(rgb, intrinsics, keep_context=question is not None)
        ans = self.answer(frame.context, question) if question is not None else None
        return Prediction(frame.depth, ans.text if ans else None, frame, ans)
