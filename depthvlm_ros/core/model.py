"""DepthVLM: a stock ``transformers`` Qwen3-VL with a DPT depth head.

Importing this module has no side effects (nanoGPT's rule): no downloads, no model building.

The model subclasses the stock :class:`~transformers.Qwen3VLForConditionalGeneration` and adds
``depth_head`` at the top level, the layout of the authors' release, so a local DepthVLM-4B
folder loads with every key matched. ``forward`` and ``generate`` are the stock ones (text);
depth comes from :meth:`DepthVLMForConditionalGeneration.encode` +
:meth:`DepthVLMForConditionalGeneration.predict_depth`, which compute exactly what one
full forward pass computes at the image tokens.

Layout of the token sequence (Qwen3-VL ChatML, system message first as in the release)::

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n<|vision_start|>
    <|image_pad|> x (gh * gw) <|vision_end|>  |  {question}<|im_end|>\\n<|im_start|>assistant\\n
    ^------------------- prefix: same for every question --------------^  ^--- suffix ---^

Attention is causal, so the prefix's hidden states (and thus the depth) do not depend on the
question: one prefill serves depth and any number of questions.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, Qwen3VLConfig, Qwen3VLForConditionalGeneration

from .camera import check_token_pixels, token_pixels_of
from .check.folder import PICKLE_SUFFIXES
from .check.headers import read_weight_layout
from .check.memory import ensure_memory_fits
from .depth_head import DPTDepthHead
from .errors import ModelLoadError

__all__ = [
    "DepthVLMForConditionalGeneration",
    "EncodedSequence",
    "tiny_config",
    "mrope_position_ids",
    "load_depthvlm",
    "check_model_folder",
    "PREPROCESSOR_DEFAULTS",
]

#: Image preprocessing of Qwen3-VL (written to preprocessor_config.json of our folders).
PREPROCESSOR_DEFAULTS = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen3VLProcessor",
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
}


@dataclass
class EncodedSequence:
    """What one pass over (a prefix of) the token sequence leaves behind.

    Attributes:
        hidden: LLM last hidden state (after the final norm), (B, L, C).
        deepstack: the three DeepStack merger outputs at the image tokens, each (B, gh, gw, C).
        image_hidden: ``hidden`` at the image tokens, (B, gh, gw, C).
        grid_hw: LLM token grid (gh, gw).
        cache: the KV cache after this pass (None when not requested).
        next_position: M-RoPE position of the next text token (text positions after an image
            advance by max(gh, gw), not by the number of image tokens).
    """

    hidden: torch.Tensor
    deepstack: list[torch.Tensor]
    image_hidden: torch.Tensor
    grid_hw: tuple[int, int]
    cache: Any
    next_position: int


def mrope_position_ids(input_ids: torch.Tensor, image_token_id: int, grid_hw: tuple[int, int],
                       start: int = 0) -> tuple[torch.Tensor, int]:
    """3-D (temporal, height, width) rotary positions for a sequence with at most one image.

    Text tokens share one position on all three axes and count up by one. The image block
    starts at the running position ``p``: temporal ``p``, height ``p + row``, width ``p + col``;
    text after it resumes at ``p + max(gh, gw)``. This is Qwen3-VL's rule (stock
    ``get_rope_index``), restated for a single image so that a continuation can be placed
    without the full sequence.

    Args:
        input_ids: (B, L); every row has the same layout.
        image_token_id: id of ``<|image_pad|>``.
        grid_hw: LLM token grid of the image.
        start: position of the first token (for continuations of a cached prefix).

    Returns:
        Position ids (3, B, L) and the position of the token that would follow.
    """
    ids = input_ids[0]
    length = ids.shape[0]
    is_img = ids == image_token_id
    n_img = int(is_img.sum())
    gh, gw = grid_hw
    pos = torch.empty(3, length, dtype=torch.long, device=ids.device)
    if n_img == 0:
        pos[:] = torch.arange(start, start + length, device=ids.device)
        return pos[:, None, :].expand(3, input_ids.shape[0], length), start + length
    if n_img != gh * gw:
        raise ValueError(f"{n_img} image tokens do not fill a {gh}x{gw} grid")
    first = int(torch.nonzero(is_img)[0])
    if not bool(is_img[first:first + n_img].all()):
        raise ValueError("image tokens must be contiguous")
    before = torch.arange(start, start + first, device=ids.device)
    pos[:, :first] = before
    p = start + first
    rows = torch.arange(gh, device=ids.device).repeat_interleave(gw)
    cols = torch.arange(gw, device=ids.device).repeat(gh)
    pos[0, first:first + n_img] = p
    pos[1, first:first + n_img] = p + rows
    pos[2, first:first + n_img] = p + cols
    after_start = p + max(gh, gw)
    n_after = length - first - n_img
    pos[:, first + n_img:] = torch.arange(after_start, after_start + n_after, device=ids.device)
    return pos[:, None, :].expand(3, input_ids.shape[0], length), after_start + n_after


class DepthVLMForConditionalGeneration(Qwen3VLForConditionalGeneration):
    """Qwen3-VL plus the DPT depth head (``depth_head``), loadable from DepthVLM folders."""

    def __init__(self, config: Qwen3VLConfig) -> None:
        super().__init__(config)
        head_type = getattr(config, "depth_head_type", "dpt")
        if head_type != "dpt":
            raise ModelLoadError(f"depth_head_type {head_type!r} is not supported (only 'dpt')")
        config.depth_head_type = "dpt"
        self.depth_head = DPTDepthHead.from_config(config)
        self.post_init()
        # The language model's cache argument was renamed in transformers 5.2x
        # (past_key_values -> cache); speak whichever this version understands.
        params = inspect.signature(self.model.language_model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    @property
    def token_pixels(self) -> int:
        """Pixels per side of one LLM image token: ViT patch x spatial merge (32 for Qwen3-VL)."""
        return token_pixels_of(self.config)

    # ----------------------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the vision tower: merged image embeddings (N, C) and three DeepStack (N, C)."""
        out = self.model.get_image_features(pixel_values, image_grid_thw)
        if hasattr(out, "pooler_output"):
            embeds, deepstack = out.pooler_output, out.deepstack_features
        else:  # older transformers returned a tuple
            embeds, deepstack = out[0], out[1]
        if isinstance(embeds, (list, tuple)):
            embeds = torch.cat(list(embeds), dim=0)
        deepstack = [torch.cat(list(d), dim=0) if isinstance(d, (list, tuple)) else d
                     for d in deepstack]
        return embeds, deepstack

    def encode(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
               image_grid_thw: torch.Tensor, use_cache: bool = False) -> EncodedSequence:
        """One pass of vision tower + LLM over a sequence holding one image per row.

        Every row must have the same layout and the same image size (``image_grid_thw`` has
        one row per image). With ``use_cache`` the returned cache can be continued with
        :meth:`decode_step`.
        """
        cfg = self.config
        merge = cfg.vision_config.spatial_merge_size
        t, h, w = (int(v) for v in image_grid_thw[0])
        if t != 1 or not bool((image_grid_thw == image_grid_thw[0]).all()):
            raise ValueError("all rows need one still image of the same size")
        grid_hw = (h // merge, w // merge)
        batch = input_ids.shape[0]
        embeds, deepstack = self.image_features(pixel_values, image_grid_thw)
        inputs_embeds = self.model.get_input_embeddings()(input_ids)
        image_mask = input_ids == cfg.image_token_id
        if int(image_mask.sum()) != embeds.shape[0]:
            raise ValueError(f"{int(image_mask.sum())} image tokens but {embeds.shape[0]} "
                             "image embeddings")
        inputs_embeds = inputs_embeds.masked_scatter(
            image_mask[..., None], embeds.to(inputs_embeds.dtype))
        position_ids, next_position = mrope_position_ids(input_ids, cfg.image_token_id, grid_hw)
        cache = DynamicCache(config=cfg.text_config) if use_cache else None
        # An explicit all-ones mask (no padding: every row has the same layout). Without one,
        # transformers releases that take the first M-RoPE row as the text positions read
        # its repeats inside the image block as packed-sequence boundaries and mask attention
        # per "sequence"; with a mask, every release builds the plain causal mask.
        attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        out = self.model.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            position_ids=position_ids, use_cache=use_cache,
            visual_pos_masks=image_mask, deepstack_visual_embeds=deepstack,
            **{self._cache_kwarg: cache})
        hidden = out.last_hidden_state
        gh, gw = grid_hw
        image_hidden = hidden[image_mask].reshape(batch, gh, gw, -1)
        deepstack_grids = [d.reshape(batch, gh, gw, -1) for d in deepstack]
        return EncodedSequence(hidden, deepstack_grids, image_hidden, grid_hw, cache, next_position)

    def predict_depth(self, enc: EncodedSequence, out_hw: tuple[int, int] | None = None
                      ) -> torch.Tensor:
        """Depth (B, H, W) in metres; default size the model image, token size x the grid."""
        if out_hw is None:
            tp = self.token_pixels
            out_hw = (enc.grid_hw[0] * tp, enc.grid_hw[1] * tp)
        ds = enc.deepstack
        return self.depth_head(ds[0], ds[1], ds[2], enc.image_hidden, out_hw)

    def decode_step(self, token_ids: torch.Tensor, cache: Any, position: int) -> torch.Tensor:
        """Feed text tokens after a cached prefix; returns logits (B, L, V) and grows ``cache``.

        Args:
            token_ids: (B, L) new text tokens.
            cache: the KV cache holding everything before them.
            position: M-RoPE position of ``token_ids[:, 0]`` (see :class:`EncodedSequence`).
        """
        pos, _ = mrope_position_ids(token_ids, -1, (0, 0), start=position)
        out = self.model.language_model(
            input_ids=token_ids, position_ids=pos, use_cache=True, **{self._cache_kwarg: cache})
        return self.lm_head(out.last_hidden_state)


# --------------------------------------------------------------------------------------------
def tiny_config(vocab_size: int, special_ids: dict[str, int], *, text_hidden: int = 64,
                text_layers: int = 2, text_heads: int = 4, text_kv_heads: int = 2,
                vision_hidden: int = 32, vision_depth: int = 3, vision_heads: int = 2,
                head_features: int = 32, head_out_channels=(16, 32, 64, 64),
                num_position_embeddings: int = 256, patch_size: int = 16) -> Qwen3VLConfig:
    """A small Qwen3-VL + DPT config for tests and CPU models, built with no download.

    By default patch 16, merge 2 and temporal patch 2 are Qwen3-VL's, so token geometry (32
    pixels per token) and preprocessing are the real ones; only widths and depths shrink.
    ``patch_size`` 8 makes 16-pixel tokens: four times the tokens of the same image, for small
    models that need finer depth per token. DeepStack taps the last three vision layers, as
    the 4B model taps layers 5, 11 and 17.
    """
    check_token_pixels(int(patch_size) * 2)  # merge 2: a clear error for patch 0 or less
    head_dim = text_hidden // text_heads
    half = head_dim // 2
    # M-RoPE splits the rotary half-dimension between (t, h, w); keep the 4B proportions.
    mrope = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]
    text = dict(vocab_size=vocab_size, hidden_size=text_hidden, intermediate_size=text_hidden * 2,
                num_hidden_layers=text_layers, num_attention_heads=text_heads,
                num_key_value_heads=text_kv_heads, head_dim=head_dim, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                 "mrope_section": mrope, "mrope_interleaved": True},
                pad_token_id=special_ids["<|endoftext|>"], rms_norm_eps=1e-6)
    vision = dict(depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
                  num_heads=vision_heads, patch_size=int(patch_size), spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=text_hidden,
                  num_position_embeddings=num_position_embeddings,
                  deepstack_visual_indexes=list(range(vision_depth - 3, vision_depth)))
    return Qwen3VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=True,
        image_token_id=special_ids["<|image_pad|>"], video_token_id=special_ids["<|video_pad|>"],
        vision_start_token_id=special_ids["<|vision_start|>"],
        vision_end_token_id=special_ids["<|vision_end|>"],
        eos_token_id=special_ids["<|im_end|>"], pad_token_id=special_ids["<|endoftext|>"],
        depth_head_type="dpt", depth_head_features=head_features,
        depth_head_out_channels=list(head_out_channels))


def check_model_folder(path: str | os.PathLike) -> Path:
    """Validate a model folder before loading; raise :class:`ModelLoadError` with one clear line.

    Refuses pickle checkpoints (``.bin``/``.pt``/...): loading them can run arbitrary code.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist")
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise ModelLoadError(f"{folder} has no config.json")
    try:
        data = json.loads(cfg.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{cfg} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("model_type") != "qwen3_vl":
        raise ModelLoadError(f"{cfg}: model_type must be 'qwen3_vl' "
                             f"(got {data.get('model_type') if isinstance(data, dict) else data!r})")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if pickles:
            raise ModelLoadError(f"{folder} holds only pickle weights ({', '.join(pickles)}); "
                                 "pickles are refused because loading them can run code — convert "
                                 "them to safetensors")
        raise ModelLoadError(f"{folder} has no .safetensors weights")
    # A truncated, corrupt or missing shard otherwise surfaces as a deep Rust error mid-load.
    problems = read_weight_layout(folder).problems
    if problems:
        raise ModelLoadError(f"{folder}: {problems[0]}")
    return folder


def load_depthvlm(path: str | os.PathLike, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", image_tokens: int | None = None,
                  frame_history: int | None = None,
                  batch_frames: int = 1) -> DepthVLMForConditionalGeneration:
    """Load a DepthVLM folder (safetensors only) with strict key matching.

    Before any weight is read, the memory the model needs on ``device`` in ``dtype`` (weights,
    the KV cache of ``frame_history`` frames of ``image_tokens`` tokens, activations) is
    estimated from the headers and compared with what the device has free
    (:func:`~depthvlm_ros.core.check.memory.ensure_memory_fits`).

    Raises:
        ModelLoadError: missing/corrupt/unsafe folder, not enough memory, or any weight left
            unmatched.
    """
    from transformers.utils import logging as hf_logging

    folder = check_model_folder(path)
    ensure_memory_fits(folder, dtype, device, image_tokens, frame_history, batch_frames)
    verbosity = hf_logging.get_verbosity()
    # transformers logs a multi-line load report before raising on mismatched shapes; it
    # would bury the one-line error below (and we report missing/unexpected keys ourselves).
    hf_logging.set_verbosity_error()
    try:
        model, info = DepthVLMForConditionalGeneration.from_pretrained(
            str(folder), dtype=dtype, use_safetensors=True, output_loading_info=True,
            local_files_only=True, trust_remote_code=False)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - turn any loader failure into one clear line
        text = str(exc).splitlines()[0] if str(exc) else ""
        if "ignore_mismatched_sizes" in text:
            text = "weight shapes do not match config.json (config of another model size?)"
        raise ModelLoadError(f"cannot load {folder}: {type(exc).__name__}: {text}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    problems = {k: sorted(v) for k, v in info.items()
                if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{k}: {', '.join(map(str, v[:5]))}{' ...' if len(v) > 5 else ''}"
                           for k, v in problems.items())
        raise ModelLoadError(f"{folder} does not match the DepthVLM architecture: {detail}")
    return model.to(device).eval()
