"""The one image preprocessing path shared by the node, the CLI, export, training and benchmarks.

RGB uint8 + intrinsics -> resize plan (:func:`~depthvlm_ros.core.camera.plan_resize`) -> PIL
resamples -> Qwen3-VL normalisation and patch layout. Two plans exist:

* ``metric`` (ours): a single bicubic resample straight to a multiple of the token size, so
  the geometry (and hence metric scale) is known exactly.
* ``release``: the DepthVLM authors' chain (bilinear to ``canonical_size``, bicubic to
  qwen_vl_utils' multiple of 28, bicubic to the image processor's multiple of the token size),
  so their checkpoint sees the pixels it was trained and evaluated on.

The token size is the model's ViT patch x spatial merge (32 = 16 x 2 for Qwen3-VL); callers
pass the model's ``patch_size`` / ``merge_size``
(:func:`~depthvlm_ros.core.camera.vision_patching` of its config).

Every resample is PIL's on uint8, and scaling to [0, 1] and normalising follow the transformers
``Qwen2VLImageProcessorPil`` path; tests compare pixel values and patch layout with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from .camera import (RELEASE_MAX_PIXELS, RELEASE_MIN_PIXELS, Intrinsics, ResizePlan,
                     check_token_pixels, plan_resize)
from .errors import InputError

__all__ = ["ModelImage", "prepare_image", "resize_for_plan", "patchify", "validate_rgb",
           "release_pixel_limits", "MAX_SIDE"]

_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}

#: Largest accepted image side; far beyond any camera, small enough to bound memory.
MAX_SIDE = 16384


@dataclass
class ModelImage:
    """An image ready for the vision tower.

    Attributes:
        pixel_values: (gh*merge * gw*merge, 3 * 2 * patch * patch) float32 patches in Qwen3-VL
            order (patch 16, merge 2 for Qwen3-VL: rows of 1536 values).
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

    A still image is repeated ``temporal_patch_size`` times. Patches are ordered by merge
    window (raster over windows, raster inside each), so every ``merge_size**2`` consecutive
    rows form one LLM token and tokens come out in raster order of the token grid
    (``patch_size * merge_size`` pixels per token side). The defaults are Qwen3-VL's.

    Returns:
        (B * H/patch * W/patch, 3 * temporal * patch * patch).
    """
    b, c, h, w = images.shape
    p, m, t = patch_size, merge_size, temporal_patch_size
    if h % (p * m) or w % (p * m):
        raise InputError(f"image size {w}x{h} is not a multiple of the {p * m}-pixel token "
                         f"(patch {p} x merge {m})")
    gh, gw = h // p, w // p
    x = images.unsqueeze(1).expand(b, t, c, h, w)
    x = x.reshape(b, t, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(b * gh * gw, c * t * p * p)


def release_pixel_limits(preprocessor: Mapping[str, Any] | None) -> tuple[int, int]:
    """Area limits ``(min_pixels, max_pixels)`` of a folder's Qwen image processor.

    Read as transformers reads ``preprocessor_config.json``: ``size`` {shortest_edge,
    longest_edge}, overridden by top-level ``min_pixels`` / ``max_pixels``. Missing values are
    Qwen3-VL's (65536 / 16777216), not the stock Qwen2-VL class defaults, because every
    DepthVLM folder is a Qwen3-VL one.
    """
    pre = preprocessor or {}
    size = pre.get("size") if isinstance(pre.get("size"), Mapping) else {}
    lo = pre.get("min_pixels") or size.get("shortest_edge") or RELEASE_MIN_PIXELS
    hi = pre.get("max_pixels") or size.get("longest_edge") or RELEASE_MAX_PIXELS
    return int(lo), int(hi)


def resize_for_plan(rgb: np.ndarray, plan: ResizePlan) -> np.ndarray:
    """Apply a plan's resamples (``plan.steps``, then bicubic to the model size) with PIL.

    A step whose size equals the current one is skipped: PIL returns an unchanged copy then,
    so skipping changes no pixel.
    """
    h, w = rgb.shape[:2]
    size = (plan.model_width, plan.model_height)
    if not plan.steps and size == (w, h):
        return rgb
    img = Image.fromarray(rgb)
    for sw, sh, name in plan.steps + ((size[0], size[1], "bicubic"),):
        if img.size != (sw, sh):
            img = img.resize((sw, sh), _FILTERS[name])
    return np.asarray(img)


def prepare_image(rgb: np.ndarray, intrinsics: Intrinsics, canonical_fx: float = 1000.0,
                  max_tokens: int = 16384, min_tokens: int = 4,
                  mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                  plan: ResizePlan | None = None, resize_mode: str = "metric",
                  pixel_limits: tuple[int, int] | None = None,
                  device: torch.device | str | None = None, patch_size: int = 16,
                  merge_size: int = 2) -> ModelImage:
    """Resize to the canonical camera and lay out patches for the vision tower.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        intrinsics: intrinsics of ``rgb`` (its size must match the image).
        canonical_fx, max_tokens, min_tokens: see :func:`~depthvlm_ros.core.camera.plan_resize`.
        mean, std: per-channel normalisation of [0, 1] pixels (Qwen3-VL: 0.5, 0.5).
        plan: use this resize plan instead of computing one (training crops); its
            ``token_pixels`` must be ``patch_size * merge_size``.
        resize_mode: ``metric`` or ``release`` (resolve ``auto`` first, see the pipeline).
        pixel_limits: the image processor's ``(min_pixels, max_pixels)`` for ``release``
            (:func:`release_pixel_limits`; default Qwen3-VL's).
        device: where to normalise and lay out the patches (default CPU). On a GPU this
            uploads the uint8 image instead of the float32 patch rows, which are 2 x 4 = 8
            times larger (every still image is repeated over the temporal patch), and takes
            that arithmetic off the CPU. ``pixel_values`` then lives on ``device``.
        patch_size, merge_size: the model's ViT patch and spatial merge
            (:func:`~depthvlm_ros.core.camera.vision_patching`; default Qwen3-VL's 16 and 2).
            Their product is the token size the plan rounds to.

    Raises:
        InputError: a bad image, intrinsics of another size, or a plan for another token size.
    """
    rgb = validate_rgb(rgb)
    h, w = rgb.shape[:2]
    if (intrinsics.width, intrinsics.height) != (w, h):
        raise InputError(f"intrinsics are for {intrinsics.width}x{intrinsics.height} but the "
                         f"image is {w}x{h}")
    token_pixels = check_token_pixels(patch_size * merge_size)
    if plan is None:
        lo, hi = pixel_limits or (RELEASE_MIN_PIXELS, RELEASE_MAX_PIXELS)
        plan = plan_resize(intrinsics, resize_mode, canonical_fx, max_tokens, min_tokens, lo, hi,
                           token_pixels)
    elif plan.token_pixels != token_pixels:
        raise InputError(f"the resize plan is for {plan.token_pixels}-pixel tokens but the model's "
                         f"are {token_pixels} (patch {patch_size} x merge {merge_size})")
    resized = resize_for_plan(rgb, plan)
    # from_numpy needs a writable array; a read-only input (e.g. a ROS buffer) is copied once.
    pixels = resized if resized.flags.writeable else resized.copy()
    x = torch.from_numpy(pixels)
    if device is not None:
        x = x.to(device)
    x = x.permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device)[:, None, None]
    x = (x - mean_t) / std_t
    pixel_values = patchify(x[None], patch_size, merge_size)
    grid = torch.tensor([[1, plan.model_height // patch_size, plan.model_width // patch_size]],
                        dtype=torch.long)
    return ModelImage(pixel_values, grid, plan, resized)
