"""The one image preprocessing path shared by the node, the CLI, export, training and benchmarks.

RGB uint8 + intrinsics -> canonical-focal resize (see :func:`plan_canonical_resize`) -> Qwen3-VL
normalisation and patch layout. The patch layout reproduces Qwen2VLImageProcessor's (a test
compares them), but resizing is ours: a single resample straight to a multiple of 32, so the
geometry (and hence metric scale) is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .camera import Intrinsics, ResizePlan, plan_canonical_resize
from .errors import InputError

__all__ = ["ModelImage", "prepare_image", "patchify", "validate_rgb", "MAX_SIDE"]

#: Largest accepted image side; far beyond any camera, small enough to bound memory.
MAX_SIDE = 16384


@dataclass
class ModelImage:
    """An image ready for the vision tower.

    Attributes:
        pixel_values: (gh*2 * gw*2, 3 * 2 * 16 * 16) float32 patches in Qwen3-VL order.
        image_grid_thw: (1, 3) int64: (1, patch rows, patch cols).
        plan: the resize plan (model size, token grid, depth scale).
        resized: the resized RGB uint8 image (model_height, model_width, 3).
    """

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    plan: ResizePlan
    resized: np.ndarray


def validate_rgb(rgb: np.ndarray) -> np.ndarray:
    """Check an RGB image array; returns it as a C-contiguous uint8 (H, W, 3) array."""
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"image must be (H, W, 3) RGB, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if h < 1 or w < 1 or h > MAX_SIDE or w > MAX_SIDE:
        raise InputError(f"image size {w}x{h} outside 1..{MAX_SIDE} pixels per side")
    if rgb.dtype != np.uint8:
        raise InputError(f"image must be uint8, got {rgb.dtype}")
    return np.ascontiguousarray(rgb)


def patchify(images: torch.Tensor, patch_size: int = 16, merge_size: int = 2,
             temporal_patch_size: int = 2) -> torch.Tensor:
    """Arrange normalised images (B, 3, H, W) into Qwen3-VL patch rows.

    A still image is repeated ``temporal_patch_size`` times. Patches are ordered by 2x2 merge
    window (raster over windows, raster inside each), so every ``merge_size**2`` consecutive
    rows form one LLM token and tokens come out in raster order of the 32-pixel grid.

    Returns:
        (B * H/16 * W/16, 3 * temporal * patch * patch).
    """
    b, c, h, w = images.shape
    p, m, t = patch_size, merge_size, temporal_patch_size
    gh, gw = h // p, w // p
    x = images.unsqueeze(1).expand(b, t, c, h, w)
    x = x.reshape(b, t, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(b * gh * gw, c * t * p * p)


def prepare_image(rgb: np.ndarray, intrinsics: Intrinsics, canonical_fx: float = 1000.0,
                  max_tokens: int = 1280, min_tokens: int = 4,
                  mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                  plan: ResizePlan | None = None) -> ModelImage:
    """Resize to the canonical camera and lay out patches for the vision tower.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        intrinsics: intrinsics of ``rgb`` (its size must match the image).
        canonical_fx, max_tokens, min_tokens: see :func:`plan_canonical_resize`.
        mean, std: per-channel normalisation of [0, 1] pixels (Qwen3-VL: 0.5, 0.5).
        plan: use this resize plan instead of computing one (training crops).
    """
    rgb = validate_rgb(rgb)
    h, w = rgb.shape[:2]
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise InputError(f"intrinsics are for {intrinsics.width}x{intrinsics.height} but the "
                         f"image is {w}x{h}")
    if plan is None:
        plan = plan_canonical_resize(intrinsics, canonical_fx, max_tokens, min_tokens)
    size = (plan.model_width, plan.model_height)
    resized = rgb if size == (w, h) else np.asarray(
        Image.fromarray(rgb).resize(size, Image.BICUBIC))
    # from_numpy needs a writable array; a read-only input (e.g. a ROS buffer) is copied once.
    pixels = resized if resized.flags.writeable else resized.copy()
    x = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    x = (x - mean_t) / std_t
    pixel_values = patchify(x[None])
    grid = torch.tensor([[1, plan.model_height // 16, plan.model_width // 16]], dtype=torch.long)
    return ModelImage(pixel_values, grid, plan, resized)
