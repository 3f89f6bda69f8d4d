"""Spatial questions whose answers follow from a depth map and its intrinsics.

Five question types (:data:`~.constants.QA_TYPES`): the depth of a point, the mean or median
depth of a region, which of two points is nearer, and the 3-D distance between two points.
Points are drawn from locally smooth surfaces only, and "nearer" pairs need a clear depth gap,
so no answer hinges on sub-pixel accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ...errors import InputError
from .constants import QA_TYPES

__all__ = ["QAItem", "backproject_pixel", "make_qa"]

#: Draws spent on one question type before falling back to the next one.
_TRIES_PER_TYPE = 40


@dataclass(frozen=True)
class QAItem:
    """One spatial question with its ground-truth answer.

    Attributes:
        qa_type: one of :data:`QA_TYPES`.
        prompt: the question.
        solution: reference answer text (numbers in metres with two decimals).
        answer: the exact value (metres) or ``"A"`` / ``"B"`` for ``nearer``.
        pixel_coords: ``((col, row), ...)`` points the question refers to.
        depth: GT depth (metres) at ``pixel_coords``.
        region: ``(col0, row0, col1, row1)`` inclusive box for region questions, else None.
    """

    qa_type: str
    prompt: str
    solution: str
    answer: float | str
    pixel_coords: tuple[tuple[int, int], ...]
    depth: tuple[float, ...]
    region: tuple[int, int, int, int] | None = None


def backproject_pixel(u: float, v: float, z: float, fx: float, fy: float, cx: float,
                      cy: float) -> np.ndarray:
    """Optical-frame 3-D point of pixel ``(u, v)`` at depth ``z``: ``((u-cx)z/fx, (v-cy)z/fy, z)``."""
    return np.array([(u - cx) * z / fx, (v - cy) * z / fy, z], dtype=np.float64)


def _smooth_valid(depth: np.ndarray, rel: float = 0.02) -> np.ndarray:
    """Valid pixels whose 3x3 neighbourhood is valid and within ``rel`` of their depth.

    Questions about a pixel on an occlusion edge would hinge on sub-pixel accuracy, so QA
    points are drawn from locally smooth surfaces only.
    """
    d = depth
    ok = d > 0
    h, w = d.shape
    out = np.zeros_like(ok)
    if h < 3 or w < 3:
        return ok
    core = d[1:-1, 1:-1]
    good = ok[1:-1, 1:-1].copy()
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            nb = d[1 + dr:h - 1 + dr, 1 + dc:w - 1 + dc]
            good &= (nb > 0) & (np.abs(nb - core) <= rel * core)
    out[1:-1, 1:-1] = good
    return out


def _fmt(x: float) -> str:
    return f"{x:.2f}"




@dataclass
class _Sampler:
    """The depth map, its intrinsics and the candidate pixels that questions draw from."""

    d: np.ndarray
    cand: np.ndarray
    rng: np.random.Generator
    fx: float
    fy: float
    cx: float
    cy: float

    def pick(self) -> tuple[int, int]:
        """A random candidate pixel as ``(col, row)``."""
        i = int(self.cand[self.rng.integers(self.cand.size)])
        w = self.d.shape[1]
        return i % w, i // w

    def z(self, p: tuple[int, int]) -> float:
        """Depth at pixel ``p = (col, row)``."""
        return float(self.d[p[1], p[0]])


def _ask_point_depth(s: _Sampler, kind: str) -> QAItem:
    p = s.pick()
    val = s.z(p)
    return QAItem(kind, (f"How far is the point at pixel (u={p[0]}, v={p[1]}) from "
                         "the camera? Give its depth along the camera's optical axis "
                         "in meters, rounded to two decimal places."),
                  f"{_fmt(val)} meters", val, (p,), (val,))


def _ask_region_stat(s: _Sampler, kind: str) -> QAItem | None:
    h, w = s.d.shape
    half = int(s.rng.integers(2, max(3, min(h, w) // 16) + 1))
    c, r = s.pick()
    c0, c1 = max(0, c - half), min(w - 1, c + half)
    r0, r1 = max(0, r - half), min(h - 1, r + half)
    patch = s.d[r0:r1 + 1, c0:c1 + 1]
    if not np.all(patch > 0):
        return None
    stat = "mean" if kind == "region_mean" else "median"
    val = float(patch.mean() if stat == "mean" else np.median(patch))
    corners = ((c0, r0), (c1, r1))
    return QAItem(kind, (f"What is the {stat} depth, in meters, of the image region "
                         f"with top-left pixel (u={c0}, v={r0}) and bottom-right pixel "
                         f"(u={c1}, v={r1}) (inclusive)? Round to two decimal places."),
                  f"{_fmt(val)} meters", val, corners, tuple(s.z(q) for q in corners),
                  (c0, r0, c1, r1))


def _ask_nearer(s: _Sampler, kind: str) -> QAItem | None:
    a, b = s.pick(), s.pick()
    za, zb = s.z(a), s.z(b)
    # A clear margin so the answer does not hinge on depth-map precision.
    if a == b or abs(za - zb) < max(0.1, 0.1 * min(za, zb)):
        return None
    ans = "A" if za < zb else "B"
    return QAItem(kind, (f"Two points are marked: A at pixel (u={a[0]}, v={a[1]}) "
                         f"and B at pixel (u={b[0]}, v={b[1]}). Which one is closer "
                         "to the camera? Answer A or B."),
                  (f"{ans}. Point A is {_fmt(za)} meters and point B is {_fmt(zb)} "
                   "meters from the camera."), ans, (a, b), (za, zb))


def _ask_distance_3d(s: _Sampler, kind: str) -> QAItem | None:
    a, b = s.pick(), s.pick()
    if a == b:
        return None
    pa = backproject_pixel(a[0], a[1], s.z(a), s.fx, s.fy, s.cx, s.cy)
    pb = backproject_pixel(b[0], b[1], s.z(b), s.fx, s.fy, s.cx, s.cy)
    val = float(np.linalg.norm(pa - pb))
    if val < 0.05:
        return None
    return QAItem(kind, (f"What is the straight-line 3D distance, in meters, between "
                         f"the point at pixel (u={a[0]}, v={a[1]}) and the point at "
                         f"pixel (u={b[0]}, v={b[1]})? Round to two decimal places."),
                  f"{_fmt(val)} meters", val, (a, b), (s.z(a), s.z(b)))


#: One question of each type, or None when this draw cannot support it (the caller retries).
_ASK: dict[str, Callable[[_Sampler, str], QAItem | None]] = {
    "point_depth": _ask_point_depth,
    "region_mean": _ask_region_stat,
    "region_median": _ask_region_stat,
    "nearer": _ask_nearer,
    "distance_3d": _ask_distance_3d,
}


def make_qa(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float,
            rng: np.random.Generator, n: int = 4,
            types: Sequence[str] | None = None) -> list[QAItem]:
    """Spatial questions whose answers follow from a depth map and its intrinsics.

    Args:
        depth: (H, W) metres, 0 invalid (pass exactly the depth that is published, e.g. the
            PNG-quantised one, so answers can be recomputed from the files).
        fx, fy, cx, cy: intrinsics of ``depth``.
        rng: random generator (deterministic output for a given state).
        n: number of items; types cycle through ``types`` starting at a random one (a type
            the map cannot support is replaced by the next one).
        types: subset of :data:`QA_TYPES` (default all).

    Returns:
        Up to ``n`` items (fewer when the map has too few valid smooth pixels).

    Raises:
        InputError: bad depth array or unknown type.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise InputError(f"depth must be a non-empty 2-D array, got shape {depth.shape}")
    types = tuple(QA_TYPES if types is None else types)
    bad = [t for t in types if t not in QA_TYPES]
    if bad or not types:
        raise InputError(f"unknown QA types {bad}; choose from {QA_TYPES}")
    d = np.nan_to_num(depth.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    cand = np.flatnonzero(_smooth_valid(d))
    if cand.size < 2:
        cand = np.flatnonzero(d > 0)
    if cand.size < 2:
        return []
    sampler = _Sampler(d, cand, rng, fx, fy, cx, cy)
    items: list[QAItem] = []
    start = int(rng.integers(len(types)))
    for j in range(n):
        # Try the scheduled type first; when the map cannot support it (e.g. no pair with a
        # clear depth gap for "nearer") fall back to the next type rather than return fewer.
        for attempt in range(len(types) * _TRIES_PER_TYPE):
            kind = types[(start + j + attempt // _TRIES_PER_TYPE) % len(types)]
            item = _ASK[kind](sampler, kind)
            if item is not None:
                items.append(item)
                break
    return items
