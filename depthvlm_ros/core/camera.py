"""Pinhole intrinsics, the canonical-focal resize plan and back-projection to 3-D.

Conventions follow REP 103/118 and depth_image_proc: the camera optical frame has x right,
y down, z forward; depth is z in metres; invalid depth is NaN. Principal points come from the
camera, never from the image centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Intrinsics", "ResizePlan", "plan_canonical_resize", "backproject", "TOKEN_PIXELS"]

#: Pixels per side of one LLM image token: ViT patch 16 x spatial merge 2.
TOKEN_PIXELS = 32


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"intrinsics must be finite, got fx={self.fx} fy={self.fy} "
                             f"cx={self.cx} cy={self.cy}")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> "Intrinsics":
        """Square-pixel intrinsics with the principal point at the centre, from a horizontal FOV."""
        if not 0.0 < hfov_deg < 180.0:
            raise InputError(f"horizontal field of view must be in (0, 180) degrees, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_k(cls, k, width: int, height: int) -> "Intrinsics":
        """From a row-major 3x3 camera matrix (9 numbers, as in sensor_msgs/CameraInfo.k)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise InputError(f"camera matrix must have 9 entries, got {k.size}")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera after resizing the image to ``width`` x ``height``.

        Uses the pixel-edge convention (a resize maps pixel edges to pixel edges), so the
        principal point moves as ``(c + 0.5) * s - 0.5``.
        """
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, int(width), int(height))

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ResizePlan:
    """How an input image is resized for the model, and how depth is brought back.

    Attributes:
        model_width, model_height: size fed to the vision tower (multiples of 32).
        grid_w, grid_h: LLM token grid (model size / 32).
        depth_scale: factor applied to the model's depth so it is metric for the input camera.
            It is ``effective_fx / canonical_fx``: 1 up to rounding when the canonical image fits
            the token budget, smaller when the image had to be shrunk further.
    """

    model_width: int
    model_height: int
    depth_scale: float

    @property
    def grid_w(self) -> int:
        return self.model_width // TOKEN_PIXELS

    @property
    def grid_h(self) -> int:
        return self.model_height // TOKEN_PIXELS

    @property
    def num_tokens(self) -> int:
        return self.grid_w * self.grid_h


def plan_canonical_resize(intr: Intrinsics, canonical_fx: float = 1000.0,
                          max_tokens: int = 1280, min_tokens: int = 4) -> ResizePlan:
    """Plan the resize that makes the image look as if taken by the canonical camera.

    The image is scaled by ``canonical_fx / fx`` horizontally and ``canonical_fx / fy``
    vertically (so pixels become square with focal ``canonical_fx``) and rounded to multiples
    of 32. If that exceeds ``max_tokens`` (or falls below ``min_tokens``) both axes are scaled
    by the same extra factor ``s``. A camera with focal ``s * canonical_fx`` sees every object
    ``s`` times smaller, and a model trained at ``canonical_fx`` then reads it ``1 / s`` times
    farther away, so the prediction is multiplied by ``depth_scale`` (the effective focal over
    the canonical one). This keeps metric scale for any image size; only detail is lost.
    """
    if canonical_fx <= 0:
        raise InputError(f"canonical_fx must be positive, got {canonical_fx}")
    if max_tokens < 1 or min_tokens < 1 or min_tokens > max_tokens:
        raise InputError(f"bad token budget: min {min_tokens}, max {max_tokens}")
    w = intr.width * canonical_fx / intr.fx
    h = intr.height * canonical_fx / intr.fy
    tokens = (w / TOKEN_PIXELS) * (h / TOKEN_PIXELS)
    extra = 1.0
    if tokens > max_tokens:
        extra = math.sqrt(max_tokens / tokens)
    elif tokens < min_tokens:
        extra = math.sqrt(min_tokens / tokens)
    gw = max(1, round(w * extra / TOKEN_PIXELS))
    gh = max(1, round(h * extra / TOKEN_PIXELS))
    # Rounding can push the grid just over the budget; shave the longer side until it fits.
    while gw * gh > max_tokens:
        if gw >= gh:
            gw -= 1
        else:
            gh -= 1
    mw, mh = gw * TOKEN_PIXELS, gh * TOKEN_PIXELS
    # Effective focal of the model image: mean of the two axes' focal after the final resize.
    eff_fx = 0.5 * (intr.fx * mw / intr.width + intr.fy * mh / intr.height)
    return ResizePlan(mw, mh, eff_fx / canonical_fx)


def backproject(depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Back-project a depth image (metres, NaN invalid) to an organized (H, W, 3) float32 cloud.

    ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``, ``z = depth``; NaN depth gives NaN points.
    """
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    h, w = depth.shape
    if (w, h) != (intr.width, intr.height):
        intr = intr.scaled(w, h)
    z = depth.astype(np.float32, copy=False)
    u = (np.arange(w, dtype=np.float32) - np.float32(intr.cx)) / np.float32(intr.fx)
    v = (np.arange(h, dtype=np.float32) - np.float32(intr.cy)) / np.float32(intr.fy)
    out = np.empty((h, w, 3), dtype=np.float32)
    np.multiply(z, u[None, :], out=out[..., 0])
    np.multiply(z, v[:, None], out=out[..., 1])
    out[..., 2] = z
    return out
