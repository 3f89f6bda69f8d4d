"""Depth and 3-D point at given pixels of a metric depth map.

ROS-free. Pixel coordinates follow the camera convention used everywhere in the package: ``u``
is the column and ``v`` the row, in pixels of the depth image, with the centre of the top-left
pixel at ``(0, 0)`` (so integer coordinates are pixel centres, as ``cx``/``cy`` in a
CameraInfo). A pixel whose nearest pixel centre lies outside the image gets NaN, as does one
whose neighbourhood holds no valid depth; that is how ``SpatialAnswer`` reports them.

A depth is valid where it is finite and positive (:func:`valid_depth_mask`); the pipeline
already publishes NaN for everything else, but maps from files may carry 0 for "no reading".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..camera import Intrinsics
from ..errors import InputError

__all__ = ["MAX_PIXELS", "DEFAULT_RADIUS", "PixelMeasurements", "validate_pixels", "sample_depth",
           "sample_depths", "points_for_pixels", "measure_pixels", "valid_depth_mask"]

#: Most pixels one question may refer to. A SpatialQuery is a user message; without a bound a
#: single query could make the node do (and publish) arbitrarily much work.
MAX_PIXELS = 4096

#: Half-size of the window used by :func:`points_for_pixels`: 1 gives a 3x3 median, which keeps
#: a pointed-at pixel on an object edge or a single NaN from deciding the answer.
DEFAULT_RADIUS = 1

# Window samples gathered at once by sample_depths: bounds its memory for large radii.
_CHUNK_SAMPLES = 1 << 22


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


def valid_depth_mask(depth: np.ndarray) -> np.ndarray:
    """Where ``depth`` holds a reading: finite and positive."""
    return np.isfinite(depth) & (depth > 0)


def _check_depth(depth: np.ndarray) -> None:
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")


def _nearest_indices(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    # floor(c + 0.5) is the pixel whose centre is nearest; the image covers [-0.5, size - 0.5).
    with np.errstate(invalid="ignore"):
        idx = np.floor(coords + 0.5)
        inside = np.isfinite(idx) & (idx >= 0) & (idx < size)
    return np.where(inside, idx, 0).astype(np.intp), inside


def _window_medians(depth: np.ndarray, cols: np.ndarray, rows: np.ndarray,
                    radius: int) -> np.ndarray:
    """Median of the valid depths in the ``(2r+1)^2`` window around each (col, row) index.

    The window is clipped at the border. Equal to ``np.median`` of the valid values (the mean
    of the two middle ones for an even count, computed in the depth's own dtype), NaN where
    the window holds none.
    """
    h, w = depth.shape
    n = cols.size
    out = np.full(n, np.nan, dtype=np.float64)
    if n == 0:
        return out
    # A window wider than the image holds nothing more than the image itself.
    r = min(radius, max(h, w))
    offsets = np.arange(-r, r + 1)
    k = offsets.size
    values = depth if np.issubdtype(depth.dtype, np.floating) else depth.astype(np.float64)
    step = max(1, _CHUNK_SAMPLES // (k * k))
    for start in range(0, n, step):
        c = cols[start:start + step, None] + offsets
        rr = rows[start:start + step, None] + offsets
        inside = ((rr >= 0) & (rr < h))[:, :, None] & ((c >= 0) & (c < w))[:, None, :]
        win = values[np.clip(rr, 0, h - 1)[:, :, None], np.clip(c, 0, w - 1)[:, None, :]]
        ok = (inside & valid_depth_mask(win)).reshape(len(c), -1)
        srt = np.sort(np.where(ok, win.reshape(len(c), -1), np.inf), axis=1)
        count = ok.sum(axis=1)
        lo, hi = (np.maximum(count - 1, 0) // 2)[:, None], (count // 2)[:, None]
        a = np.take_along_axis(srt, lo, axis=1)[:, 0]
        b = np.take_along_axis(srt, np.minimum(hi, k * k - 1), axis=1)[:, 0]
        med = np.where(lo[:, 0] == hi[:, 0], a, (a + b) / 2)
        out[start:start + step] = np.where(count > 0, med, np.nan)
    return out


def sample_depths(depth: np.ndarray, pixels: np.ndarray,
                  radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """:func:`sample_depth` at many pixels at once.

    Args:
        depth: ``(H, W)`` depth in metres, NaN (or non-positive) where invalid.
        pixels: ``(N, 2)`` array of ``(u, v)``; non-finite or outside coordinates give NaN.
        radius: half-size of the window (see :func:`sample_depth`).

    Returns:
        ``(N,)`` float64 medians, NaN where nothing valid was found.
    """
    _check_depth(depth)
    if radius < 0:
        raise InputError(f"radius must be >= 0, got {radius}")
    px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    h, w = depth.shape
    cols, in_u = _nearest_indices(px[:, 0], w)
    rows, in_v = _nearest_indices(px[:, 1], h)
    inside = in_u & in_v
    out = np.full(px.shape[0], np.nan, dtype=np.float64)
    out[inside] = _window_medians(depth, cols[inside], rows[inside], radius)
    return out


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
    _check_depth(depth)
    if radius < 0:
        raise InputError(f"radius must be >= 0, got {radius}")
    if not (math.isfinite(u) and math.isfinite(v)):
        return float("nan")
    return float(sample_depths(depth, np.array([[u, v]], dtype=np.float64), radius)[0])


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
    _check_depth(depth)
    h, w = depth.shape
    if (intrinsics.width, intrinsics.height) != (w, h):
        intrinsics = intrinsics.scaled(w, h)
    depths = sample_depths(depth, px, radius)
    xyz = np.empty((px.shape[0], 3), dtype=np.float64)
    xyz[:, 0] = (px[:, 0] - intrinsics.cx) * depths / intrinsics.fx
    xyz[:, 1] = (px[:, 1] - intrinsics.cy) * depths / intrinsics.fy
    xyz[:, 2] = depths
    return depths.astype(np.float32), xyz.astype(np.float32)


@dataclass(frozen=True)
class PixelMeasurements:
    """What was measured at a list of pixels (``SpatialAnswer.pixels`` / ``depths`` / ``points``).

    Attributes:
        pixels: ``(N, 2)`` float64 ``(u, v)`` in depth-image (= input-image) pixels.
        depths: ``(N,)`` float32 metres along the optical axis (:func:`sample_depth`), NaN where
            invalid or outside the image.
        points: ``(N, 3)`` float32 camera optical frame points (x right, y down, z forward).
        labels: per pixel, the name the answer text uses: ``""`` (named by its coordinates),
            a letter written in the question (``"A"``), or an object label the model gave.
        inside: ``(N,)`` bool, whether the pixel lies in the image (an outside pixel's NaN
            is worded differently from an invalid reading).
    """

    pixels: np.ndarray
    depths: np.ndarray
    points: np.ndarray
    labels: tuple[str, ...]
    inside: np.ndarray

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def measure_pixels(depth: np.ndarray, intrinsics: Intrinsics, pixels: Sequence | np.ndarray,
                   labels: Sequence[str] | None = None,
                   radius: int = DEFAULT_RADIUS) -> PixelMeasurements:
    """Depth and 3-D point of each pixel, with the labels the answer text will use.

    Raises:
        InputError: invalid ``pixels`` or ``depth``, or ``labels`` of another length.
    """
    px = validate_pixels(pixels)
    names = tuple(labels) if labels is not None else ("",) * px.shape[0]
    if len(names) != px.shape[0]:
        raise InputError(f"{len(names)} labels for {px.shape[0]} pixels")
    depths, xyz = points_for_pixels(depth, intrinsics, px, radius)
    h, w = depth.shape
    inside = _nearest_indices(px[:, 0], w)[1] & _nearest_indices(px[:, 1], h)[1]
    return PixelMeasurements(px, depths, xyz, names, inside)
