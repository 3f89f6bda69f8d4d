"""What the benchmarks measure on: a deterministic synthetic frame from a centred pinhole camera."""

from __future__ import annotations

import numpy as np

from ..camera import Intrinsics

__all__ = ["synthetic_frame", "synthetic_camera_frame"]


def synthetic_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test frame: smooth colour ramps with texture (uint8, (H, W, 3)).

    The content does not change the cost of a forward pass; a structured image just keeps
    the markers and the depth previews readable.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1),
                     0.5 + 0.5 * np.sin((xx + yy) / 23.0)], axis=-1)
    noise = rng.normal(0.0, 0.05, size=(height, width, 3)).astype(np.float32)
    return (np.clip(base + noise, 0.0, 1.0) * 255).astype(np.uint8)


def synthetic_camera_frame(width: int, height: int, fx: float,
                           seed: int = 0) -> tuple[np.ndarray, Intrinsics]:
    """:func:`synthetic_frame` and its camera: fy = fx, principal point at the image centre."""
    intrinsics = Intrinsics(fx, fx, (width - 1) / 2.0, (height - 1) / 2.0, width, height)
    return synthetic_frame(width, height, seed), intrinsics
