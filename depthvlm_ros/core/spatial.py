"""Numeric spatial answers from a metric depth map: depth and 3-D point at given pixels.

ROS-free. Pixel coordinates follow the camera convention used everywhere in the package: ``u``
is the column and ``v`` the row, in pixels of the depth image, with the centre of the top-left
pixel at ``(0, 0)`` (so integer coordinates are pixel centres, as ``cx``/``cy`` in a
CameraInfo). A pixel whose nearest pixel centre lies outside the image gets NaN, as does one
whose neighbourhood holds no valid depth; that is how ``SpatialAnswer`` reports them.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .camera import Intrinsics
from .errors import InputError

__all__ = ["MAX_PIXELS", "DEFAULT_RADIUS", "validate_pixels", "sample_depth", "points_for_pixels"]

#: Most pixels one question may refer to. A SpatialQuery is a user message; without a bound a
#: single query could make the node do (and publish) arbitrarily much work.
MAX_PIXELS = 4096

#: Half-size of the window used by :func:`points_for_pixels`: 1 gives a 3x3 median, which keeps
#: a pointed-at pixel on an object edge or a single NaN from deciding the answer.
DEFAULT_RADIUS = 1


def validate_pixels(pixels: Sequence | np.ndarray) -> np.ndarray:
    """Check and convert referenced pixels to an ``(N, 2)`` float64 array of ``(u, v)``.

    Args:
        pixels: ``(N, 2)`` or ``(N, 3)`` array-like of ``(u, v[, ignored])``; may be empty.

    Returns:
        ``(N, 2)`` float64 array.

    Raises:
        InputError: wrong shape, non-numeric or non-finite coordinates, or more than
            :data:`MAX_PIXELS` pixels. Coordinates outside the image are *not* an error.
    """
    try:
        arr = np.asarray(pixels, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("pixels must be numbers (u, v)") from None
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise InputError(f"pixels must have shape (N, 2) or (N, 3), got {arr.shape}")
    if arr.shape[0] > MAX_PIXELS:
        raise InputError(f"{arr.shape[0]} pixels referenced, limit {MAX_PIXELS}")
    arr = arr[:, :2]
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        u, v = (float(c) for c in arr[bad])
        raise InputError(f"pixel {bad} has a non-finite coordinate (u={u}, v={v})")
    return np.ascontiguousarray(arr)


def _nearest_index(coord: float, size: int) -> int | None:
    # floor(c + 0.5) is the pixel whose centre is nearest; the image covers [-0.5, size - 0.5).
    i = math.floor(coord + 0.5)
    return i if 0 <= i < size else None


def sample_depth(depth: np.ndarray, u: float, v: float, radius: int = DEFAULT_RADIUS) -> float:
    """Robust depth at pixel ``(u, v)``: the median of valid depths in a square window.

    Args:
        depth: ``(H, W)`` depth in metres, NaN (or non-positive) where invalid.
        u: column, pixels (fractional allowed).
        v: row, pixels (fractional allowed).
        radius: half-size of the window; 0 reads the nearest pixel only. The window is clipped
            at the image border.

    Returns:
        The median depth, or NaN when ``(u, v)`` is outside the image or the window holds no
        valid depth.
    """
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    if radius < 0:
        raise InputError(f"radius must be >= 0, got {radius}")
    if not (math.isfinite(u) and math.isfinite(v)):
        return float("nan")
    h, w = depth.shape
    iu, iv = _nearest_index(u, w), _nearest_index(v, h)
    if iu is None or iv is None:
        return float("nan")
    win = depth[max(0, iv - radius):iv + radius + 1, max(0, iu - radius):iu + radius + 1]
    vals = win[np.isfinite(win) & (win > 0)]
    if vals.size == 0:
        return float("nan")
    return float(np.median(vals))


def points_for_pixels(depth: np.ndarray, intrinsics: Intrinsics, pixels: Sequence | np.ndarray,
                      radius: int = DEFAULT_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """Depth and 3-D point (camera optical frame) of each referenced pixel.

    The point uses the same pinhole formula as :func:`depthvlm_ros.core.camera.backproject`,
    evaluated at the exact (possibly fractional) pixel with the robust depth of
    :func:`sample_depth`: ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``, ``z = depth``.

    Args:
        depth: ``(H, W)`` metres, NaN invalid.
        intrinsics: intrinsics of the camera; scaled to the depth's size when they differ.
        pixels: see :func:`validate_pixels`.
        radius: window half-size for :func:`sample_depth`.

    Returns:
        ``(depths (N,) float32, xyz (N, 3) float32)``; NaN rows for invalid pixels.

    Raises:
        InputError: invalid ``pixels`` or ``depth``.
    """
    px = validate_pixels(pixels)
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    h, w = depth.shape
    if (intrinsics.width, intrinsics.height) != (w, h):
        intrinsics = intrinsics.scaled(w, h)
    n = px.shape[0]
    depths = np.full(n, np.nan, dtype=np.float64)
    for i, (u, v) in enumerate(px):
        depths[i] = sample_depth(depth, u, v, radius)
    xyz = np.empty((n, 3), dtype=np.float64)
    xyz[:, 0] = (px[:, 0] - intrinsics.cx) * depths / intrinsics.fx
    xyz[:, 1] = (px[:, 1] - intrinsics.cy) * depths / intrinsics.fy
    xyz[:, 2] = depths
    return depths.astype(np.float32), xyz.astype(np.float32)
