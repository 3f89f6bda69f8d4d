"""How much memory a model folder needs on a device, and whether the device has it.

The estimate is made before loading, from the safetensors headers and ``config.json`` only:

* weights: every tensor's element count times the bytes of the dtype it will be loaded in
  (a bf16 checkpoint loaded in float32 takes twice its file size);
* KV cache: ``2 x layers x kv_heads x head_dim`` values per token, for every held frame
  (``frame_history`` prefixes of system prompt + image tokens), plus one question and answer;
* activations: the largest stage of one frame (vision tower over ``merge^2 x tokens``
  patches, LLM prefill with its causal mask, depth head at the token size (32 for
  DepthVLM-4B) x the token grid: the largest for DepthVLM-4B), plus the process's own runtime
  (torch, tokenizer, Python).

Peak RSS measured on a CPU also counts the page cache of the memory-mapped safetensors files
(reclaimable, and counted as available by the kernel), so it can exceed this estimate
while loading bf16 files into float32.

Loading refuses with one line when the estimate exceeds what the device has free
(``MemAvailable`` of ``/proc/meminfo`` on a CPU, ``torch.cuda.mem_get_info`` on a GPU),
instead of being killed by the kernel's OOM killer halfway through 9 GB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..camera import TOKEN_PIXELS, token_pixels_of, vision_patching
from ..depth_head import DEFAULT_FEATURES
from ..errors import ModelLoadError

__all__ = [
    "SKIP_MEMORY_CHECK_ENV",
    "DTYPE_NAMES",
    "MemoryEstimate",
    "estimate_memory",
    "available_memory",
    "memory_shortfall",
    "ensure_memory_fits",
    "default_image_tokens",
    "format_bytes",
]

#: Set to 1 to load even when the estimate says the device is too small (swap, zram...).
SKIP_MEMORY_CHECK_ENV = "DEPTHVLM_SKIP_MEMORY_CHECK"
#: torch dtype -> the name users write.
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
# Python, torch, transformers and the tokenizer, measured at about 0.6 GB; a margin on top.
_RUNTIME_BYTES = 1 << 30
# Live full-resolution channels of the depth head per output pixel, in units of `features`
# (the interpolated output_conv1 map, its source, the 32-channel conv and its ReLU).
_HEAD_LIVE_FEATURES = 1.5
# Tokens of the system prompt, question turn and answer around the image tokens.
_TEXT_TOKENS = 96


def format_bytes(n: float) -> str:
    """``n`` bytes as GB (1e9) with one decimal, or MB under a gigabyte."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs on its device, by part.

    Attributes:
        dtype: name of the dtype the weights are loaded in.
        weights: bytes of the weights in that dtype.
        kv_per_token: KV-cache bytes per token (all layers).
        image_tokens: image tokens of the frame size the estimate is for.
        frame_history: held frames counted.
        kv_cache: KV-cache bytes of all held frames.
        activations: peak working memory of one frame plus the runtime.
    """

    dtype: str
    weights: int
    kv_per_token: int
    image_tokens: int
    frame_history: int
    kv_cache: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations

    @property
    def kv_per_frame(self) -> int:
        return self.kv_cache // max(1, self.frame_history)

    def describe(self) -> str:
        """One line: the parts and the total."""
        return (f"{format_bytes(self.total)} = weights {format_bytes(self.weights)} ({self.dtype})"
                f" + KV cache {format_bytes(self.kv_cache)} ({self.frame_history} frames x "
                f"{self.image_tokens} image tokens, {self.kv_per_token / 1024:g} KiB/token)"
                f" + activations {format_bytes(self.activations)}")


def default_image_tokens(max_image_tokens: int = 16384, token_pixels: int = TOKEN_PIXELS) -> int:
    """Image tokens of the frame the estimate assumes: a 640x480 camera with fx = 500.

    That is the export's canonical grid (30 x 40 = 1200 tokens at canonical focal 1000 for
    32-pixel tokens, four times as many for 16-pixel ones), capped by the token budget.
    ``token_pixels`` is the model's token size (its config's patch x merge).
    """
    from ..export.interface import canonical_grid

    gh, gw = canonical_grid(max_tokens=max(4, min(int(max_image_tokens), 16384)),
                            token_pixels=token_pixels)
    return gh * gw


def _get(config: Any, name: str, default: Any = None) -> Any:
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def estimate_memory(config: Any, parameters: int, dtype: torch.dtype, image_tokens: int,
                    frame_history: int, batch_frames: int = 1) -> MemoryEstimate:
    """The memory a model of ``config`` needs for frames of ``image_tokens`` tokens.

    Args:
        config: a ``Qwen3VLConfig`` (or an object with its ``text_config`` /
            ``vision_config`` attributes).
        parameters: element count of all stored weights (from the headers).
        dtype: the dtype the model is loaded in.
        image_tokens: LLM image tokens per frame (one token = patch x merge pixels a side,
            32 x 32 for Qwen3-VL).
        frame_history: frames whose prefill is kept (of all cameras together).
        batch_frames: frames run in one model pass. A batched pass holds its own cache until
            it is split into one cache per frame, and its activations scale with the batch.
    """
    size = torch.tensor([], dtype=dtype).element_size()
    text, vision = config.text_config, config.vision_config
    layers = int(text.num_hidden_layers)
    hidden = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    head_dim = int(_get(text, "head_dim", None) or hidden // heads)
    kv_per_token = 2 * layers * int(text.num_key_value_heads) * head_dim * size
    batch = max(1, int(batch_frames))
    frames = max(1, int(frame_history)) + (batch if batch > 1 else 0)
    tokens = int(image_tokens) + _TEXT_TOKENS
    kv_cache = kv_per_token * tokens * frames
    patch, merge = vision_patching(config)
    patches = merge * merge * int(image_tokens)
    # Scaled-dot-product attention runs fused kernels (no score matrix) on CPU and GPU; the
    # LLM's causal mask is the one tokens x tokens tensor that remains.
    vision_bytes = patches * (6 * int(vision.hidden_size) + 2 * int(vision.intermediate_size)) * size
    llm_bytes = (tokens * (4 * hidden + (heads + 2 * int(text.num_key_value_heads)) * head_dim
                           + 3 * int(text.intermediate_size)) * size
                 + tokens * tokens * size)
    features = int(_get(config, "depth_head_features", None) or DEFAULT_FEATURES)
    # The head's largest maps are at the model image's size: token_pixels^2 pixels a token.
    head_bytes = int(image_tokens * (patch * merge) ** 2 * features * _HEAD_LIVE_FEATURES * size)
    activations = batch * max(vision_bytes, llm_bytes, head_bytes) + _RUNTIME_BYTES
    return MemoryEstimate(DTYPE_NAMES.get(dtype, str(dtype)), int(parameters) * size, kv_per_token,
                          int(image_tokens), frames, kv_cache, int(activations))


def available_memory(device: torch.device | str) -> tuple[int, str]:
    """Free memory of ``device`` in bytes, and where the figure comes from.

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (free memory plus reclaimable caches, which
    includes the page cache that memory-mapped safetensors live in); elsewhere the physical
    pages as a fallback. CUDA: ``torch.cuda.mem_get_info``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free memory of {device} (torch.cuda.mem_get_info)"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(pages), "available physical pages"


def memory_shortfall(estimate: MemoryEstimate, device: torch.device | str) -> str | None:
    """None when ``device`` can hold ``estimate``; else one line saying what is missing."""
    free, source = available_memory(device)
    if estimate.total <= free:
        return None
    return (f"not enough memory on {torch.device(device)}: the model needs about "
            f"{estimate.describe()}, but only {format_bytes(free)} is available ({source})")


def ensure_memory_fits(folder: str | os.PathLike, dtype: torch.dtype, device: torch.device | str,
                       image_tokens: int | None = None, frame_history: int | None = None,
                       batch_frames: int = 1) -> None:
    """Refuse, before loading, a folder that the device cannot hold in ``dtype``.

    Args:
        folder: a model folder (already checked by ``check_model_folder``).
        dtype, device: what the model will be loaded as.
        image_tokens: image tokens per frame (default :func:`default_image_tokens`).
        frame_history: held frames (default ``DepthVLMConfig.frame_history``).
        batch_frames: frames per model pass (see :func:`estimate_memory`).

    Raises:
        ModelLoadError: one line with the estimate, what is available, and how to proceed.
    """
    if os.environ.get(SKIP_MEMORY_CHECK_ENV, "") not in ("", "0"):
        return
    from transformers import Qwen3VLConfig

    from ..config import DepthVLMConfig
    from .headers import read_weight_layout

    layout = read_weight_layout(folder)
    config = Qwen3VLConfig.from_pretrained(str(folder), local_files_only=True)
    parameters = sum(info.numel for _, info in layout.tensors.values())
    estimate = estimate_memory(
        config, parameters, dtype,
        image_tokens if image_tokens is not None
        else default_image_tokens(token_pixels=token_pixels_of(config)),
        frame_history if frame_history is not None else DepthVLMConfig().frame_history,
        batch_frames)
    short = memory_shortfall(estimate, device)
    if short:
        smaller = " (or load it in bfloat16)" if dtype == torch.float32 else ""
        raise ModelLoadError(f"refusing to load {folder}: {short}; free memory, use a larger "
                             f"device{smaller}, or set {SKIP_MEMORY_CHECK_ENV}=1 to try anyway")
