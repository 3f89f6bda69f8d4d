"""Speed of the full DepthVLM architecture on one device: depth-only frames, stage by stage.

:func:`run_arch_benchmark` builds a DepthVLM from its config with random weights (speed does
not depend on weight values) directly on the device, wraps it in the real
:class:`~depthvlm_ros.core.pipeline.DepthVLMPipeline`, and times depth-only frames
(``process_frame(keep_context=False)``) of a synthetic camera image:

* per stage: preprocess (CPU), vision tower, LLM prefill over the image prefix, depth head,
  post-processing, and the whole frame; the pipeline's own timings (it synchronizes the GPU
  between stages), with the vision/prefill boundary added by a synchronizing wrapper around
  :meth:`~depthvlm_ros.core.model.DepthVLMForConditionalGeneration.image_features`;
* frames/s (1 / median frame time) and peak GPU memory;
* variants, interleaved frame by frame (A, B, C, A, B, C, ...) so that a load change hits all
  of them: ``eager``; ``compile`` (``torch.compile``, inductor, of every vision block, every
  decoder layer and the head: "regional" compilation, one compile per distinct layer class
  instead of one for 60 unrolled layers, so it fits a short GPU session); ``cudagraphs`` (the
  same with ``mode="reduce-overhead"``, i.e. inductor plus CUDA graphs: its gain over
  ``compile`` is what the graphs add); ``trt_head`` (eager model, depth head on a TensorRT
  engine built for the benchmark's exact sizes). A variant that cannot run here (no CUDA, no
  TensorRT, a compile error) is reported as skipped with the reason; the run goes on.

Next to the measured frames/s stands the compute-bound limit: ``peak_flops / flops_per_frame``,
with the matmul FLOPs of one depth-only frame counted analytically (:func:`frame_flops`).

Absolute times mean something only on a GPU; on a CPU (``arch="tiny"``, for tests of this code
path) only the structure and the ratios are of interest, and the GPU-only variants are skipped.
"""

from __future__ import annotations

import contextlib
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from transformers import Qwen3VLConfig

from .camera import Intrinsics
from .config import DepthVLMConfig
from .depth_head import DEFAULT_FEATURES, DEFAULT_OUT_CHANNELS
from .model import DepthVLMForConditionalGeneration, tiny_config
from .perf import _say, _sync, ratio_of_medians, summarize, synthetic_frame
from .pipeline import DepthVLMPipeline

__all__ = [
    "ARCHS",
    "VARIANTS",
    "STAGES",
    "H100_BF16_DENSE_FLOPS",
    "TARGET_FPS",
    "qwen3_vl_4b_config",
    "arch_config",
    "build_random_model",
    "frame_flops",
    "run_arch_benchmark",
    "summary_markdown",
]

#: Architectures :func:`run_arch_benchmark` can build.
ARCHS = ("tiny", "4b")
#: Variants in the order they are prepared; ``eager`` is the baseline and always runs.
VARIANTS = ("eager", "compile", "cudagraphs", "trt_head")
#: Stages of a depth-only frame, in order (``total`` is the whole frame).
STAGES = ("preprocess", "vision", "prefill", "head", "postprocess", "total")
#: Dense bf16 tensor-core peak of one H100 SXM (datasheet, no sparsity). The H200 is the same
#: chip with faster memory, so the same figure applies to it.
H100_BF16_DENSE_FLOPS = 989e12
#: The issue's target: depth-only frames per second on one H100.
TARGET_FPS = 30.0

#: Width of the DPT head's last hidden conv (fixed in the release, see depth_head.py).
_HEAD_HIDDEN = 32


def qwen3_vl_4b_config() -> Qwen3VLConfig:
    """DepthVLM-4B: Qwen3-VL-4B's published dimensions plus the release's DPT head.

    The dimensions are those of ``config.json`` of Qwen/Qwen3-VL-4B-Instruct (the key-layout
    test in ``test/test_model.py`` uses this config too); token ids are Qwen3-VL's defaults. The DPT
    head takes its release widths (256 features, channels 256/512/1024/1024) by default.
    """
    return Qwen3VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                         num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=128, max_position_embeddings=262144,
                         rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                          "mrope_section": [24, 20, 20],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                           out_hidden_size=2560, num_position_embeddings=2304,
                           deepstack_visual_indexes=[5, 11, 17]),
        tie_word_embeddings=True, depth_head_type="dpt")


def arch_config(arch: str, tokenizer) -> Qwen3VLConfig:
    """The config of ``arch``: ``4b`` (:func:`qwen3_vl_4b_config`) or ``tiny`` (the tests' model).

    Args:
        arch: one of :data:`ARCHS`.
        tokenizer: the tokenizer the pipeline will use; ``tiny`` takes its vocabulary and
            special-token ids from it (``4b`` keeps Qwen's, which only name positions here).
    """
    if arch == "4b":
        return qwen3_vl_4b_config()
    if arch == "tiny":
        from .tokenizer import SPECIAL_TOKENS

        special = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        return tiny_config(len(tokenizer), special)
    raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")


def build_random_model(config: Qwen3VLConfig, device: torch.device | str, dtype: torch.dtype,
                       attn_implementation: str = "sdpa", seed: int = 0
                       ) -> DepthVLMForConditionalGeneration:
    """A DepthVLM of ``config`` with random weights, created on ``device`` in ``dtype``.

    Parameters are allocated and initialized on the device itself (the ``torch.device``
    context) in the target dtype (``_from_config``'s default-dtype context): building the 4B
    model on a CPU in float32 first would take minutes and 18 GB of host memory.
    """
    torch.manual_seed(seed)
    with torch.device(device):
        model = DepthVLMForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation=attn_implementation)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Analytic FLOPs
# --------------------------------------------------------------------------------------------
def _conv(h: int, w: int, k: int, c_in: int, c_out: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of a k x k conv producing an h x w map (bias ignored)."""
    return 2 * h * w * k * k * c_in * c_out


def _head_flops(dim_in: int, features: int, channels: Sequence[int], gh: int, gw: int,
                out_hw: tuple[int, int]) -> int:
    """Conv FLOPs of :class:`~depthvlm_ros.core.depth_head.DPTDepthHead` for one image."""
    c1, c2, c3, c4 = (int(c) for c in channels)
    f = int(features)
    sizes = [(8 * gh, 8 * gw), (4 * gh, 4 * gw), (2 * gh, 2 * gw), (gh, gw)]
    total = sum(_conv(gh, gw, 1, dim_in, c) for c in (c1, c2, c3, c4))  # 1x1 projects
    # Transposed convs with kernel = stride: every input pixel feeds k*k outputs per channel pair.
    total += sum(_conv(gh, gw, k, c, c) for k, c in ((8, c1), (4, c2), (2, c3)))
    total += sum(_conv(h, w, 3, c, f) for (h, w), c in zip(sizes, (c1, c2, c3, c4)))  # layerN_rn

    def rcu(h: int, w: int) -> int:  # residual conv unit: two 3x3 convs
        return 2 * _conv(h, w, 3, f, f)

    total += rcu(gh, gw) + _conv(2 * gh, 2 * gw, 1, f, f)                   # refinenet4
    total += 2 * rcu(2 * gh, 2 * gw) + _conv(4 * gh, 4 * gw, 1, f, f)       # refinenet3
    total += 2 * rcu(4 * gh, 4 * gw) + _conv(8 * gh, 8 * gw, 1, f, f)       # refinenet2
    total += 2 * rcu(8 * gh, 8 * gw) + _conv(16 * gh, 16 * gw, 1, f, f)     # refinenet1
    total += _conv(16 * gh, 16 * gw, 3, f, f // 2)                          # output_conv1
    oh, ow = out_hw
    total += _conv(oh, ow, 3, f // 2, _HEAD_HIDDEN) + _conv(oh, ow, 1, _HEAD_HIDDEN, 1)
    return total


def frame_flops(config: Qwen3VLConfig, grid_hw: tuple[int, int], seq_len: int,
                out_hw: tuple[int, int] | None = None, causal: bool = True) -> dict[str, Any]:
    """Matmul/conv FLOPs of one depth-only frame, counted from the config's dimensions.

    Every matrix product counts ``2 m n k``; convolutions count 2 per multiply-add; biases,
    norms, activations, rotary tables, interpolation and softmax are not counted (they are
    memory-bound, not tensor-core work). Three parts:

    * vision tower over ``4 gh gw`` patches: the Conv3d patch embedding, per block the qkv,
      output and two MLP projections plus bidirectional attention (``QK^T`` and ``AV``, each
      ``2 N^2 D``), and the merger plus the DeepStack mergers over the ``gh gw`` merged tokens;
    * LLM prefill over ``seq_len`` tokens (the image prefix the pipeline feeds): q/k/v/o
      (grouped-query) and the gated MLP per layer, and causal attention, which counts the
      ``L (L + 1) / 2`` query-key pairs a causal kernel computes (``causal=False``: all
      ``L^2``, what a kernel that masks after the fact computes). No ``lm_head``: depth-only
      frames never compute logits;
    * the DPT head at the token grid, output ``out_hw`` (default ``32 gh x 32 gw``).

    Args:
        config: the model config (``vision_config``, ``text_config``, ``depth_head_*``).
        grid_hw: LLM token grid ``(gh, gw)``.
        seq_len: tokens in the prefill (prefix text + ``gh gw`` image tokens + vision end).
        out_hw: depth output size of the head.
        causal: count only the causal half of the LLM's attention.

    Returns:
        FLOPs as Python ints: ``vision``, ``llm``, ``head``, ``total`` and a ``parts`` dict.
    """
    v, t = config.vision_config, config.text_config
    gh, gw = (int(x) for x in grid_hw)
    merge = int(v.spatial_merge_size)
    n_tok = gh * gw
    n_patch = n_tok * merge * merge
    d, inter = int(v.hidden_size), int(v.intermediate_size)
    patch_in = int(v.in_channels) * int(v.temporal_patch_size) * int(v.patch_size) ** 2
    parts: dict[str, int] = {}
    parts["vision_patch_embed"] = 2 * n_patch * patch_in * d
    parts["vision_linear"] = int(v.depth) * 2 * n_patch * (3 * d * d + d * d + 2 * d * inter)
    parts["vision_attention"] = int(v.depth) * 2 * (2 * n_patch * n_patch * d)
    merged = d * merge * merge
    n_mergers = 1 + len(v.deepstack_visual_indexes)
    parts["vision_mergers"] = n_mergers * 2 * n_tok * (merged * merged
                                                       + merged * int(v.out_hidden_size))
    c, heads, kv = int(t.hidden_size), int(t.num_attention_heads), int(t.num_key_value_heads)
    hd = int(getattr(t, "head_dim", None) or c // heads)
    ti, layers, length = int(t.intermediate_size), int(t.num_hidden_layers), int(seq_len)
    parts["llm_linear"] = layers * 2 * length * (c * heads * hd + 2 * c * kv * hd
                                                 + heads * hd * c + 3 * c * ti)
    pairs = length * (length + 1) // 2 if causal else length * length
    parts["llm_attention"] = layers * 2 * (2 * pairs * heads * hd)
    out_hw = tuple(out_hw) if out_hw is not None else (32 * gh, 32 * gw)
    parts["head"] = _head_flops(c, int(getattr(config, "depth_head_features", DEFAULT_FEATURES)),
                                getattr(config, "depth_head_out_channels", DEFAULT_OUT_CHANNELS),
                                gh, gw, out_hw)
    vision = sum(v_ for k, v_ in parts.items() if k.startswith("vision_"))
    llm = parts["llm_linear"] + parts["llm_attention"]
    return {"vision": vision, "llm": llm, "head": parts["head"],
            "total": vision + llm + parts["head"], "parts": parts, "causal_attention": causal,
            "grid": [gh, gw], "vision_patches": n_patch, "seq_len": length,
            "out_hw": list(out_hw)}


# --------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------
@dataclass
class _Variant:
    """What a variant swaps into the model: decoder layers, vision blocks, head runtime."""

    name: str
    text_layers: list[nn.Module] | None = None
    vision_blocks: list[nn.Module] | None = None
    head: Callable | None = None
    mark_step: bool = False  # CUDA-graph trees: one new "step" per frame
    min_warmup: int = 1
    status: str = "ok"
    notes: list[str] = field(default_factory=list)


class _Swapper:
    """Puts a variant's modules into the model for one frame and restores the eager ones."""

    def __init__(self, pipe: DepthVLMPipeline) -> None:
        self.pipe = pipe
        inner = pipe.model.model
        self.text = inner.language_model.layers
        self.vision = inner.visual.blocks
        self.eager_text = list(self.text)
        self.eager_vision = list(self.vision)
        self.eager_head = pipe.head_runtime

    @contextlib.contextmanager
    def active(self, variant: _Variant) -> Iterator[None]:
        # ModuleList item assignment keeps the container (and any reference to it) in place;
        # compiled wrappers share the eager modules' parameters, so nothing is copied.
        try:
            for i, m in enumerate(variant.text_layers or ()):
                self.text[i] = m
            for i, m in enumerate(variant.vision_blocks or ()):
                self.vision[i] = m
            if variant.head is not None:
                self.pipe.head_runtime = variant.head
            yield
        finally:
            for i, m in enumerate(self.eager_text):
                self.text[i] = m
            for i, m in enumerate(self.eager_vision):
                self.vision[i] = m
            self.pipe.head_runtime = self.eager_head


class _StageClock:
    """Splits the pipeline's ``vision_prefill`` stage where the vision tower ends.

    An instance attribute shadows the model's ``image_features`` method (which ``encode``
    calls first), synchronizing before and after it; the pipeline already synchronizes around
    ``encode``, so the two extra synchronizations change no overlap.
    """

    def __init__(self, pipe: DepthVLMPipeline) -> None:
        self.model = pipe.model
        self.device = pipe.device
        self.vision_s = float("nan")
        original = self.model.image_features

        def timed(pixel_values, image_grid_thw):
            t0 = _sync(self.device)
            out = original(pixel_values, image_grid_thw)
            self.vision_s = _sync(self.device) - t0
            return out

        self.model.image_features = timed

    def close(self) -> None:
        self.model.__dict__.pop("image_features", None)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _compile_all(modules: Sequence[nn.Module], backend: str, mode: str | None) -> list[nn.Module]:
    kwargs: dict[str, Any] = {"backend": backend, "dynamic": False}
    if mode is not None:
        kwargs["mode"] = mode
    return [torch.compile(m, **kwargs) for m in modules]


def _prepare_variant(name: str, pipe: DepthVLMPipeline, swapper: _Swapper, grid: tuple[int, int],
                     out_hw: tuple[int, int], cache_dir: str | None, compile_backend: str,
                     cpu_compile: bool, progress: Callable[[str], None] | None) -> _Variant:
    """Build a variant's replacements, or a skipped variant saying why not."""
    device = pipe.device
    if name == "eager":
        return _Variant("eager")
    if name in ("compile", "cudagraphs"):
        if name == "cudagraphs" and device.type != "cuda":
            return _Variant(name, status="skipped: CUDA graphs need a CUDA device")
        if device.type != "cuda" and not cpu_compile:
            return _Variant(name, status="skipped: torch.compile is measured on CUDA only (CPU "
                                         "inductor timings say nothing about the GPU target, and "
                                         "compiling takes minutes on a CPU)")
        if not hasattr(torch, "compile"):
            return _Variant(name, status="skipped: this torch has no torch.compile")
        mode = None
        if compile_backend == "inductor":
            mode = "reduce-overhead" if name == "cudagraphs" else "default"
        elif name == "cudagraphs":
            return _Variant(name, status=f"skipped: CUDA graphs come with inductor's "
                                         f"reduce-overhead mode, not backend {compile_backend!r}")
        try:
            return _Variant(name, _compile_all(swapper.eager_text, compile_backend, mode),
                            _compile_all(swapper.eager_vision, compile_backend, mode),
                            _compile_all([swapper.eager_head], compile_backend, mode)[0],
                            mark_step=name == "cudagraphs",
                            # reduce-overhead runs a frame eagerly, records, then replays
                            min_warmup=3 if name == "cudagraphs" else 1,
                            notes=[f"torch.compile(backend={compile_backend!r}, mode={mode!r}) "
                                   "of each vision block, decoder layer and the depth head"])
        except Exception as exc:  # noqa: BLE001 - an unavailable variant is a result, not a crash
            return _Variant(name, status=f"skipped: torch.compile failed: {_short(exc)}")
    if name == "trt_head":
        from .export import (ExportError, TrtProfile, default_cache_dir, make_head_runtime,
                             tensorrt_unavailable_reason)

        reason = tensorrt_unavailable_reason(device)
        if reason:
            return _Variant(name, status=f"skipped: {reason}")
        # A profile of exactly the benchmark's sizes builds in a fraction of the time of the
        # pipeline's wide default profile, and the engine is as fast at that size.
        profile = TrtProfile(min_grid=grid, opt_grid=grid, max_grid=grid, max_batch=1,
                             out_min=out_hw, out_max=out_hw)
        try:
            runtime = make_head_runtime("tensorrt", pipe.model, cache_dir or default_cache_dir(),
                                        fp16=pipe.dtype != torch.float32, profile=profile,
                                        progress=progress)
        except ExportError as exc:
            return _Variant(name, status=f"skipped: {exc}")
        except Exception as exc:  # noqa: BLE001
            return _Variant(name, status=f"skipped: TensorRT head failed: {_short(exc)}")
        return _Variant(name, head=runtime,
                        notes=[f"TensorRT engine "
                               f"({'fp16' if pipe.dtype != torch.float32 else 'fp32'}) for grid "
                               f"{grid[0]}x{grid[1]} only; model otherwise eager"])
    raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def _matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 8192, repeats: int = 10
                 ) -> float | None:
    """Measured ``n^3`` matmul FLOP/s on ``device`` (CUDA only): the achievable ceiling."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1e3 / repeats
    del a, b
    return 2.0 * n ** 3 / seconds


def _dynamo_counts() -> dict[str, int]:
    try:
        from torch._dynamo.utils import counters
    except Exception:  # noqa: BLE001 - diagnostics only
        return {}
    return {"unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


@contextlib.contextmanager
def _recompile_limit(limit: int) -> Iterator[None]:
    # Vision blocks and decoder layers share one code object (the checkpointing layer's
    # __call__), and each compiled mode adds an entry per layer class; the default limit (8)
    # would silently drop later ones back to eager.
    try:
        import torch._dynamo.config as cfg
    except Exception:  # noqa: BLE001
        yield
        return
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    old = getattr(cfg, name, None)
    if old is not None:
        setattr(cfg, name, max(int(old), limit))
    try:
        yield
    finally:
        if old is not None:
            setattr(cfg, name, old)


def _depth_diff(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """``max|a - b| / (1 + max|b|)`` over pixels valid in both (None when none are)."""
    if a is None or b is None or a.shape != b.shape:
        return None
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return None
    return float(np.abs(a[ok] - b[ok]).max() / (1.0 + np.abs(b[ok]).max()))


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------
def run_arch_benchmark(arch: str = "4b", device: torch.device | str = "cuda",
                       dtype: torch.dtype = torch.bfloat16, width: int = 640, height: int = 480,
                       fx: float = 500.0, repeats: int = 10, warmup: int = 3,
                       variants: Sequence[str] = VARIANTS,
                       progress: Callable[[str], None] | None = None, *,
                       peak_flops: float = H100_BF16_DENSE_FLOPS,
                       peak_flops_name: str = "H100 SXM dense bf16, datasheet",
                       target_fps: float = TARGET_FPS, max_image_tokens: int = 1280,
                       resize_mode: str | None = None, attn_implementation: str = "sdpa",
                       cache_dir: str | None = None, compile_backend: str = "inductor",
                       cpu_compile: bool = False, budget_s: float | None = None,
                       seed: int = 0) -> dict[str, Any]:
    """Time depth-only frames of the full architecture, per stage and per variant, in one run.

    Args:
        arch: ``4b`` (DepthVLM-4B, :func:`qwen3_vl_4b_config`) or ``tiny`` (the tests' model).
        device: where the model is built and run.
        dtype: model precision (bf16 for the issue's figure).
        width, height, fx: the camera (fy = fx, principal point at the centre). The default
            640 x 480 at fx 500 is resized to the canonical focal 1000: a 1280 x 960 model
            image, 30 x 40 = 1200 image tokens.
        repeats: timed frames per variant.
        warmup: untimed frames per variant first (compiling happens here; CUDA-graph variants
            get at least 3, since they record on the second call).
        variants: subset of :data:`VARIANTS`; ``eager`` is always added as the baseline.
        progress: called with one line per step.
        peak_flops: the device's peak FLOP/s for the compute-bound limit.
        peak_flops_name: what ``peak_flops`` is, for the report.
        target_fps: frames/s to compare the best variant with (GPU runs only).
        max_image_tokens: the pipeline's token budget.
        resize_mode: ``release`` or ``metric``; default ``release`` for ``4b`` (the
            checkpoint's preprocessing, whose CPU cost counts) and ``metric`` for ``tiny``.
        attn_implementation: attention kernels of the model (``sdpa``, ``eager``...).
        cache_dir: folder for the head's ONNX file and TensorRT engine (default: the
            pipeline's engine cache, ``~/.cache/depthvlm_ros``, so a rerun reuses the engine).
        compile_backend: ``torch.compile`` backend (``inductor``; ``eager``/``aot_eager`` only
            check that the layers trace).
        cpu_compile: run ``compile`` on a CPU too (to check the code path; not a figure).
        budget_s: seconds from the start after which variants not yet prepared are skipped
            (compiling cannot be interrupted, so this bounds the run only between variants;
            it keeps a short GPU session from losing every figure to one slow compile).
        seed: weight seed.

    Returns:
        A JSON-ready dict: the model and image, FLOPs and compute-bound limits, and per
        variant its status, per-stage millisecond summaries, frames/s, speed-up over eager,
        peak memory and the depth difference from eager.
    """
    from .tokenizer import build_tokenizer

    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be at least 1 and warmup at least 0")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(VARIANTS)}")
    names = ["eager"] + [v for v in VARIANTS if v in variants and v != "eager"]
    is_cuda = device.type == "cuda"

    t_build = t_start = time.perf_counter()
    tokenizer = build_tokenizer(vocab_size=512, seed=seed)
    config = arch_config(arch, tokenizer)
    _say(progress, f"building {arch} ({config.text_config.num_hidden_layers} LLM layers, "
                   f"{config.vision_config.depth} vision blocks) on {device} in "
                   f"{str(dtype).replace('torch.', '')}, random weights")
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model = build_random_model(config, device, dtype, attn_implementation, seed)
    _sync(device)
    build_s = time.perf_counter() - t_build
    params = int(sum(p.numel() for p in model.parameters()))
    weight_bytes = int(sum(p.numel() * p.element_size() for p in model.parameters()))
    after_build = int(torch.cuda.memory_allocated(device)) if is_cuda else None
    mode = resize_mode or ("release" if arch == "4b" else "metric")
    pipe_cfg = DepthVLMConfig(device=str(device), dtype=str(dtype).replace("torch.", ""),
                              head_backend="torch", max_image_tokens=max_image_tokens,
                              resize_mode=mode)
    pipe = DepthVLMPipeline(model, tokenizer, pipe_cfg, model_canonical_fx=1000.0)
    rgb = synthetic_frame(width, height, seed)
    intr = Intrinsics(fx, fx, (width - 1) / 2.0, (height - 1) / 2.0, width, height)
    plan = pipe.prepare(rgb, intr).plan
    grid = (plan.grid_h, plan.grid_w)
    out_hw = (plan.model_height, plan.model_width)
    seq_len = len(pipe.prompt_ids(plan.num_tokens))
    flops = frame_flops(config, grid, seq_len, out_hw)
    _say(progress, f"built in {build_s:.1f} s: {params / 1e9:.3f} B parameters "
                   f"({weight_bytes / 2 ** 30:.2f} GiB); {width}x{height} fx {fx:g} -> model image "
                   f"{plan.model_width}x{plan.model_height}, grid {grid[0]}x{grid[1]} "
                   f"({plan.num_tokens} image tokens, {seq_len}-token prefix); "
                   f"{_flop(flops['total'])} per depth-only frame, compute-bound limit "
                   f"{peak_flops / flops['total']:.1f} frames/s at {peak_flops / 1e12:.0f} TFLOP/s")

    swapper = _Swapper(pipe)
    clock = _StageClock(pipe)
    results: dict[str, dict[str, Any]] = {}
    prepared: dict[str, _Variant] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    depth: dict[str, np.ndarray] = {}

    def frame(v: _Variant) -> dict[str, float]:
        with swapper.active(v):
            if v.mark_step:
                torch.compiler.cudagraph_mark_step_begin()
            res = pipe.process_frame(rgb, intr, keep_context=False)
        times = dict(res.timings)
        times["vision"] = clock.vision_s
        times["prefill"] = times["vision_prefill"] - clock.vision_s
        depth[v.name] = res.depth
        return times

    try:
        with _recompile_limit(64):
            # Prepare and warm every variant (compiling, recording graphs, building engines)
            # before any timed frame, so the timed rounds see only steady-state frames.
            for name in names:
                t0 = time.perf_counter()
                if name != "eager" and budget_s is not None and t0 - t_start > budget_s:
                    v = _Variant(name, status=f"skipped: the time budget ({budget_s:g} s) was "
                                              f"spent before this variant ({t0 - t_start:.0f} s)")
                else:
                    v = _prepare_variant(name, pipe, swapper, grid, out_hw, cache_dir,
                                         compile_backend, cpu_compile, progress)
                if v.status != "ok":
                    results[name] = {"status": v.status}
                    _say(progress, f"[{name}] {v.status}")
                    continue
                before = _dynamo_counts()
                first_s = None
                try:
                    for i in range(max(warmup, v.min_warmup)):
                        t = time.perf_counter()
                        frame(v)
                        if i == 0:
                            first_s = _sync(device) - t
                    peak = None
                    if is_cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                        frame(v)
                        peak = int(torch.cuda.max_memory_allocated(device))
                except Exception as exc:  # noqa: BLE001 - see below
                    if name == "eager":
                        raise  # the baseline failing is a bug, not an unavailable variant
                    results[name] = {"status": f"skipped: failed while warming up: {_short(exc)}"}
                    _say(progress, f"[{name}] {results[name]['status']}")
                    continue
                after = _dynamo_counts()
                prepared[name] = v
                samples[name] = {s: [] for s in STAGES}
                results[name] = {
                    "status": "ok", "notes": v.notes,
                    "first_frame_s": first_s, "prepare_and_warmup_s": time.perf_counter() - t0,
                    "warmup_frames": max(warmup, v.min_warmup), "peak_memory_bytes": peak,
                    "dynamo": ({k: after[k] - before.get(k, 0) for k in after}
                               if name in ("compile", "cudagraphs") else None)}
                _say(progress, f"[{name}] ready in {results[name]['prepare_and_warmup_s']:.1f} s "
                               f"(first frame {first_s:.2f} s"
                               + (f", peak {peak / 2 ** 30:.2f} GiB)" if peak else ")"))

            # Timed rounds: every variant once per round, starting variant rotating.
            order = list(prepared)
            for r in range(repeats):
                k = r % len(order)
                for name in order[k:] + order[:k]:
                    if name not in prepared:
                        continue  # failed in an earlier round
                    try:
                        times = frame(prepared[name])
                    except Exception as exc:  # noqa: BLE001
                        if name == "eager":
                            raise
                        prepared.pop(name)
                        results[name] = {"status": f"skipped: failed in timed frame {r + 1}: "
                                                   f"{_short(exc)}"}
                        _say(progress, f"[{name}] {results[name]['status']}")
                        continue
                    for s in STAGES:
                        samples[name][s].append(times[s])
                if (r + 1) % max(1, repeats // 4) == 0 or r + 1 == repeats:
                    _say(progress, f"    round {r + 1}/{repeats}: " + ", ".join(
                        f"{n} {np.median(samples[n]['total']) * 1e3:.1f} ms"
                        for n in prepared))
    finally:
        clock.close()

    eager_total = samples["eager"]["total"]
    for name in prepared:
        s = samples[name]
        model_s = [a + b + c for a, b, c in zip(s["vision"], s["prefill"], s["head"])]
        total_med = float(np.median(s["total"]))
        results[name].update({
            "stages": {st: summarize(s[st]) for st in STAGES},
            "model_stages": summarize(model_s),
            "fps": 1.0 / total_med if total_med > 0 else None,
            "fps_model_stages": 1.0 / float(np.median(model_s)) if np.median(model_s) > 0 else None,
            "speedup_vs_eager": ratio_of_medians(eager_total, s["total"]),
            "stage_speedup_vs_eager": {st: ratio_of_medians(samples["eager"][st], s[st])
                                       for st in STAGES},
            # Model FLOP utilization over the whole frame and over the GPU stages alone.
            "mfu": (flops["total"] / total_med / peak_flops) if is_cuda and total_med > 0 else None,
            "mfu_model_stages": (flops["total"] / float(np.median(model_s)) / peak_flops
                                 if is_cuda and np.median(model_s) > 0 else None),
            "depth_rel_diff_vs_eager": _depth_diff(depth.get(name), depth.get("eager")),
        })

    matmul = _matmul_rate(device, dtype) if is_cuda and dtype != torch.float32 else None
    ok = {n: r for n, r in results.items() if r.get("status") == "ok" and r.get("fps")}
    best = max(ok, key=lambda n: ok[n]["fps"]) if ok else None
    host = {"python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine()}
    try:
        import transformers

        host["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - the model needs it
        pass
    if is_cuda:
        props = torch.cuda.get_device_properties(device)
        host.update(gpu=props.name, gpu_memory_bytes=int(props.total_memory),
                    cuda=torch.version.cuda,
                    compute_capability=f"{props.major}.{props.minor}")
    return {
        "arch": arch,
        "device": str(device),
        "device_name": host.get("gpu", platform.processor() or platform.machine()),
        "dtype": str(dtype).replace("torch.", ""),
        "attn_implementation": attn_implementation,
        "absolute_times_meaningful": is_cuda,
        "note": ("Variants are interleaved frame by frame; speed-ups are ratios of medians from "
                 "this run. " + ("Absolute times are from this GPU." if is_cuda else
                                 "CPU run: absolute times say nothing about the GPU target.")),
        "image": [width, height],
        "fx": fx,
        "resize_mode": mode,
        "model_image": [plan.model_width, plan.model_height],
        "grid": list(grid),
        "image_tokens": plan.num_tokens,
        "sequence_tokens": seq_len,
        "vision_patches": flops["vision_patches"],
        "parameters": params,
        "weights_bytes": weight_bytes,
        "build_s": build_s,
        "repeats": repeats,
        "warmup": warmup,
        "memory": {"after_build_allocated_bytes": after_build,
                   "peak_allocated_bytes": (int(torch.cuda.max_memory_allocated(device))
                                            if is_cuda else None),
                   "note": "peak per variant: one frame after warm-up, from "
                           "torch.cuda.max_memory_allocated (weights included)"},
        "flops": flops,
        "peak_flops": peak_flops,
        "peak_flops_name": peak_flops_name,
        "compute_bound_fps": peak_flops / flops["total"],
        "measured_matmul_flops": matmul,
        "compute_bound_fps_measured_matmul": (matmul / flops["total"]) if matmul else None,
        "target_fps": target_fps,
        "best_variant": best,
        "best_fps": ok[best]["fps"] if best else None,
        "meets_target": (bool(ok[best]["fps"] >= target_fps) if best and is_cuda else None),
        "variants": results,
        "host": host,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def _ms(stats: dict | None) -> str:
    if not stats or stats.get("median_ms") is None:
        return "-"
    return f"{stats['median_ms']:.2f}"


def _flop(value: float) -> str:
    return f"{value / 1e12:.3f} TFLOP" if value >= 1e11 else f"{value / 1e9:.3f} GFLOP"


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2 ** 30:.2f} GiB"


def summary_markdown(result: dict[str, Any]) -> list[str]:
    """Markdown lines for a :func:`run_arch_benchmark` result (a section of ``perf.md``)."""
    r = result
    f = r["flops"]
    name = {"4b": "DepthVLM-4B (Qwen3-VL-4B + DPT head)", "tiny": "tiny test model"}.get(
        r["arch"], r["arch"])
    lines = [
        f"## Full architecture: {name}, random weights, {r['dtype']} on {r['device_name']}",
        "",
        f"{r['image'][0]}x{r['image'][1]} camera (fx {r['fx']:g}), {r['resize_mode']} resize -> "
        f"{r['model_image'][0]}x{r['model_image'][1]} model image: {r['grid'][0]}x{r['grid'][1]} "
        f"= {r['image_tokens']} image tokens ({r['vision_patches']} vision patches), "
        f"{r['sequence_tokens']}-token prefill; {r['parameters'] / 1e9:.3f} B parameters "
        f"({_gib(r['weights_bytes'])}); attention {r['attn_implementation']}; "
        f"{r['repeats']} timed frames per variant, interleaved.",
        "",
        f"Compute per depth-only frame: {_flop(f['total'])} (vision {_flop(f['vision'])}, "
        f"LLM prefill {_flop(f['llm'])}, head {_flop(f['head'])}; matmul/conv FLOPs, causal "
        f"attention). **Compute-bound limit "
        f"{r['compute_bound_fps']:.1f} frames/s** at {r['peak_flops'] / 1e12:.0f} TFLOP/s "
        f"({r['peak_flops_name']})"
        + (f"; {r['compute_bound_fps_measured_matmul']:.1f} frames/s at the matmul rate measured "
           f"here ({r['measured_matmul_flops'] / 1e12:.0f} TFLOP/s)."
           if r.get("measured_matmul_flops") else "."),
        "",
        "Stage columns are median milliseconds per frame; frames/s is 1 / median frame time; "
        "MFU is achieved over peak FLOP/s for the whole frame.",
        "",
        "| variant | frames/s | vs eager | preprocess | vision | prefill | head | postprocess "
        "| total | peak memory | MFU | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for vname, v in r["variants"].items():
        if v.get("status") != "ok":
            lines.append(f"| {vname} | - | - | - | - | - | - | - | - | - | - | {v.get('status')} |")
            continue
        st = v["stages"]
        sp = v.get("speedup_vs_eager")
        lines.append(
            f"| {vname} | {v['fps']:.1f} | {sp:.2f}x | "
            + " | ".join(_ms(st[s]) for s in STAGES)
            + f" | {_gib(v.get('peak_memory_bytes'))} | "
            + (f"{v['mfu'] * 100:.0f}%" if v.get("mfu") is not None else "-") + " | ok |")
    if r.get("absolute_times_meaningful"):
        verdict = ("met" if r["meets_target"] else "MISSED") if r.get("best_variant") else "-"
        best = r["variants"].get(r.get("best_variant"), {})
        gpu_only = best.get("fps_model_stages")
        lines += ["", f"Target >= {r['target_fps']:g} frames/s depth-only on one H100: best "
                      f"{r['best_fps']:.1f} frames/s end to end ({r['best_variant']}"
                      + (f"; {gpu_only:.1f} frames/s for vision + prefill + head alone"
                         if gpu_only else "")
                      + f") against a compute-bound limit of {r['compute_bound_fps']:.1f}: "
                      f"**{verdict}**."]
    else:
        lines += ["", f"Target >= {r['target_fps']:g} frames/s on one H100: not measured "
                      "(no GPU in this run; times above are CPU times of the code path)."]
    lines += ["", r["note"]]
    return lines
