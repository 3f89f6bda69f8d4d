"""The DepthLM-style baseline: one text question per point, with a marker drawn on the image.

The paper compares its dense head with asking the VLM one question per point (DepthLM). The
benchmark asks :data:`DEPTHLM_QUESTION` about each point with a ring drawn there
(:func:`draw_marker`), at the annotated points when a record has them, else at points drawn from
its GT map (:func:`depthlm_points`); :func:`ask_points` times the answers and reads metres from
them (:func:`~.answers.as_metres`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..camera import Intrinsics
from ..errors import InputError
from .answers import as_metres
from .jsonl import BenchRecord

__all__ = ["DEPTHLM_QUESTION", "DEFAULT_DEPTHLM_POINTS", "PointFn", "PointAnswers", "draw_marker",
           "depthlm_points", "ask_points"]

#: ``point_fn(rgb_with_marker, intrinsics, (u, v)) -> answer``: a float in metres, None, or the
#: answer text to :data:`DEPTHLM_QUESTION`.
PointFn = Callable[[np.ndarray, Intrinsics, tuple[int, int]], Any]

#: The question the per-point baseline asks (the model engineer's callable may use it).
DEPTHLM_QUESTION = ("How far from the camera is the point marked by the red circle, in metres? "
                    "Answer with a single number.")

#: Points per image asked when a model is benchmarked: the paper's comparison (dense head vs one
#: question per point) belongs in every model report, and a few points keep its cost near one
#: extra forward per point.
DEFAULT_DEPTHLM_POINTS = 8


def draw_marker(rgb: np.ndarray, u: float, v: float, radius: int | None = None,
                color: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    """A copy of ``rgb`` with a ring marker centred on pixel ``(u, v)`` = (col, row).

    The ring (``color``, with a thin white outline so it shows on red surfaces too) leaves the
    marked pixel itself visible. The radius defaults to 1.5 % of the shorter side, at least 4.

    Args:
        rgb: (H, W, 3) uint8.
        u, v: column and row.
        radius: ring radius in pixels.
        color: ring colour.
    """
    img = np.array(rgb, dtype=np.uint8, copy=True)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    r = float(radius if radius is not None else max(4, round(0.015 * min(h, w))))
    t = max(1.0, r / 4.0)  # ring thickness
    pad = int(math.ceil(r + t + 2))
    r0, r1 = max(0, int(v) - pad), min(h, int(v) + pad + 1)
    c0, c1 = max(0, int(u) - pad), min(w, int(u) + pad + 1)
    if r0 >= r1 or c0 >= c1:
        return img
    yy, xx = np.mgrid[r0:r1, c0:c1]
    dist = np.hypot(xx - u, yy - v)
    ring = np.abs(dist - r) <= t / 2
    halo = (np.abs(dist - r) <= t / 2 + 1) & ~ring
    patch = img[r0:r1, c0:c1]
    patch[halo] = (255, 255, 255)
    patch[ring] = color
    return img


def depthlm_points(rec: BenchRecord, gt_capped: np.ndarray | None, size: tuple[int, int],
                   n: int) -> tuple[np.ndarray, np.ndarray]:
    """The points the baseline asks about, and their depths.

    Args:
        rec: the record; its first ``n`` annotated points when it has points.
        gt_capped: its (masked, range-capped) GT map, which ``n`` random valid pixels are drawn
            from (seeded by the record) when it has no points.
        size: ``(W, H)`` of the annotated image, which the returned coordinates refer to.
        n: points per image.

    Returns:
        ``(coords, depths)``: (N, 2) [col, row] at ``size`` and (N,) float32 metres; empty when
        there is nothing to ask about.
    """
    if rec.has_points:
        coords = np.asarray(rec.pixel_coords[:n], dtype=np.float64)
        return coords, np.asarray(rec.depth[:n], dtype=np.float32)
    if gt_capped is None:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.float32)
    rows, cols = np.nonzero(gt_capped > 0)
    if rows.size == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.float32)
    pick = np.random.default_rng(rec.seed).choice(rows.size, min(n, rows.size), replace=False)
    gh, gw = gt_capped.shape
    w, h = size
    # GT pixel centre -> RGB pixel (the maps may differ in resolution, e.g. ScanNet++).
    u = np.round((cols[pick] + 0.5) * w / gw - 0.5)
    v = np.round((rows[pick] + 0.5) * h / gh - 0.5)
    return np.stack([u, v], axis=1), gt_capped[rows[pick], cols[pick]].astype(np.float32)


@dataclass
class PointAnswers:
    """The baseline's answers for one image.

    Attributes:
        metres: one per point, None where the answer was unusable.
        seconds: the time each question took.
    """

    metres: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Unusable answers."""
        return sum(m is None for m in self.metres)


def ask_points(point_fn: PointFn, rgb: np.ndarray, intrinsics: Intrinsics, coords: np.ndarray,
               annotation_size: tuple[int, int]) -> PointAnswers:
    """Ask ``point_fn`` about each point, with the marker drawn on the loaded image.

    Args:
        point_fn: see :data:`PointFn`.
        rgb: the loaded (H, W, 3) image.
        intrinsics: its intrinsics.
        coords: (N, 2) [col, row] at ``annotation_size``.
        annotation_size: ``(W, H)`` the coordinates refer to.
    """
    h, w = rgb.shape[:2]
    # Marker coordinates: annotation pixels -> loaded image pixels.
    su, sv = w / annotation_size[0], h / annotation_size[1]
    out = PointAnswers()
    for cu, cv in coords:
        uv = (int(round(cu * su)), int(round(cv * sv)))
        marked = draw_marker(rgb, uv[0], uv[1])
        t0 = time.perf_counter()
        answer = point_fn(marked, intrinsics, uv)
        out.seconds.append(time.perf_counter() - t0)
        out.metres.append(as_metres(answer))
    return out
