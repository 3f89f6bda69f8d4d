"""The exported head's interface: tensor names, opset, which head, its sizes, the log channel.

Every other module of the package speaks through these names, so an ONNX graph, a TensorRT
profile and an I/O binding always agree on them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

from ..camera import TOKEN_PIXELS
from ..depth_head import DPTDepthHead
from ..errors import ExportError

__all__ = [
    "HEAD_INPUTS",
    "HEAD_OUTPUT",
    "DEFAULT_OPSET",
    "logger",
    "head_of",
    "head_dims",
    "head_device_dtype",
    "probe_features",
    "canonical_grid",
    "head_token_pixels",
    "grid_pixels",
    "say",
]

logger = logging.getLogger("depthvlm_ros.export")

HEAD_INPUTS = ("ds0", "ds1", "ds2", "llm", "out_hw")
HEAD_OUTPUT = "depth"
#: Opset 18 is the lowest the torch.export-based exporter emits without down-conversion.
DEFAULT_OPSET = 18


def head_of(model_or_head: nn.Module) -> DPTDepthHead:
    """The DPT head of a DepthVLM model (``.depth_head``), or the head itself."""
    head = getattr(model_or_head, "depth_head", model_or_head)
    if not isinstance(head, DPTDepthHead):
        raise ExportError(f"expected a DepthVLM model or a DPTDepthHead, got {type(model_or_head).__name__}")
    return head


def head_dims(head: DPTDepthHead) -> dict[str, Any]:
    """Channel sizes of a head (input width, fusion features, pyramid channels)."""
    return {"dim_in": int(head.norm.normalized_shape[0]),
            "features": int(head.scratch.output_conv1.in_channels),
            "out_channels": [int(p.out_channels) for p in head.projects]}


def head_device_dtype(model_or_head: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the head's weights (where runtimes must deliver the depth)."""
    p = next(head_of(model_or_head).parameters())
    return p.device, p.dtype


def probe_features(head: DPTDepthHead, grid: tuple[int, int], seed: int = 0) -> list[torch.Tensor]:
    """Four random (1, gh, gw, C) token grids on the head's device and dtype, from ``seed``.

    Drawn on the CPU, so a seed gives the same features on every device.
    """
    device, dtype = head_device_dtype(head)
    gen = torch.Generator().manual_seed(seed)
    c = head_dims(head)["dim_in"]
    return [torch.randn(1, *grid, c, generator=gen).to(device, dtype) for _ in range(4)]


def canonical_grid(width: int = 640, height: int = 480, fx: float = 500.0, fy: float | None = None,
                   canonical_fx: float = 1000.0, max_tokens: int = 1280,
                   token_pixels: int = TOKEN_PIXELS) -> tuple[int, int]:
    """Token grid (gh, gw) the pipeline uses for an image, via ``plan_canonical_resize``.

    The default, a 640x480 image with fx = fy = 500 at canonical focal 1000, is resized to
    1280x960 and gives a 30 x 40 grid of 32-pixel tokens (1200 tokens, inside the default
    1280 budget). It is both the TensorRT profile's optimum and the benchmark's default size.
    ``token_pixels`` is the model's token size (:func:`head_token_pixels`); 16-pixel tokens
    would need 4800 tokens there, so the budget shrinks that grid.
    """
    from ..camera import Intrinsics, plan_canonical_resize

    fy = fx if fy is None else fy
    intr = Intrinsics(fx, fy, (width - 1) / 2.0, (height - 1) / 2.0, width, height)
    plan = plan_canonical_resize(intr, canonical_fx, max_tokens=max_tokens,
                                 token_pixels=token_pixels)
    return plan.grid_h, plan.grid_w


def head_token_pixels(model_or_head: nn.Module) -> int:
    """Pixels per token side of the model a head belongs to (32 for Qwen3-VL).

    The exported graph takes any output size; this only decides the sizes a head is probed,
    profiled and timed at (``token_pixels * grid``, the pipeline's).
    """
    return int(head_of(model_or_head).token_pixels)


def grid_pixels(grid: tuple[int, int], token_pixels: int) -> tuple[int, int]:
    """The model image size ``(H, W)`` of a token grid: ``token_pixels * grid``."""
    return token_pixels * int(grid[0]), token_pixels * int(grid[1])


def say(progress: Callable[[str], None] | None, message: str) -> None:
    """Log a step of a long job and pass it to the caller's ``progress`` callback, if any."""
    logger.info(message)
    if progress is not None:
        progress(message)
