"""Random draws both worlds share (colours, materials, lights, intrinsics) and clearance tests.

The order of the draws inside each function is part of the output: reordering them changes
every scene.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...errors import InputError
from .scene import Box, Cylinder, Light, Material, Primitive

__all__ = ["rand_color", "rand_material", "rand_light", "draw_intrinsics", "inside", "clear_of",
           "against_wall"]

# Resolutions drawn by render_scene: widths and the two usual aspects.
_WIDTHS = (256, 320, 384, 448, 512, 640, 768, 800, 1024)
_ASPECTS = (3 / 4, 9 / 16)
_FX_RANGE = (300.0, 1500.0)
_HFOV_RANGE_DEG = (35.0, 100.0)


def rand_color(rng: np.random.Generator, sat: float = 0.8, lo: float = 0.05,
                hi: float = 0.95) -> tuple[float, float, float]:
    """Random linear RGB: random hue / saturation / value so brightness varies per object."""
    hue = rng.random()
    s = rng.uniform(0.0, sat)
    v = rng.uniform(lo, hi)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return tuple(float(x) for x in rgb)


def rand_material(rng: np.random.Generator, scale_range: tuple[float, float],
                   palette: Sequence[tuple] | None = None) -> Material:
    a = rand_color(rng) if palette is None else palette[rng.integers(len(palette))]
    # Second colour: a variation of the first or an unrelated colour (strong contrast).
    if rng.random() < 0.5:
        b = tuple(float(np.clip(x * rng.uniform(0.4, 1.6), 0, 1)) for x in a)
    else:
        b = rand_color(rng)
    w = rng.random(3) * (rng.random(3) < 0.6)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Material(color_a=a, color_b=b, checker=float(w[0]), stripes=float(w[1]),
                    noise=float(w[2]),
                    scale=float(math.exp(rng.uniform(*np.log(scale_range)))),
                    stripe_axis=tuple(float(x) for x in axis),
                    phase=tuple(float(x) for x in rng.uniform(0, 10, 3)))


def rand_light(rng: np.random.Generator, kind: str, room=None) -> Light:
    elev = rng.uniform(math.radians(15), math.radians(80))
    az = rng.uniform(0, 2 * math.pi)
    direction = (math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev))
    warm = rng.uniform(-0.12, 0.12)
    color = (1.0 + warm, 1.0, 1.0 - warm)
    if kind == "indoor":
        wx, ly, hz = room
        return Light(direction=direction, diffuse=float(rng.uniform(0.3, 0.9)),
                     ambient=float(rng.uniform(0.15, 0.45)), color=color,
                     point_position=(float(rng.uniform(0, wx)), float(rng.uniform(0, ly)),
                                     float(hz - 0.05)),
                     point_power=float(rng.uniform(0.0, 0.8)),
                     point_radius=float(rng.uniform(1.5, 4.0)))
    return Light(direction=direction, diffuse=float(rng.uniform(0.5, 1.1)),
                 ambient=float(rng.uniform(0.15, 0.4)), color=color)


def draw_intrinsics(rng: np.random.Generator, width: int | None, height: int | None,
                fx: float | None) -> tuple[int, int, float, float, float, float]:
    w_draw = int(rng.choice(_WIDTHS))
    aspect = float(rng.choice(_ASPECTS))
    u_fx, u_fy, u_cx, u_cy = rng.random(4)
    w = int(width) if width is not None else w_draw
    if height is not None:
        h = int(height)
    else:
        h = max(1, int(round(w * aspect / 2)) * 2)
    if w < 1 or h < 1:
        raise InputError(f"image size must be positive, got {w}x{h}")
    if fx is None:
        # fx in [300, 1500] but also a plausible field of view for this width.
        lo = max(_FX_RANGE[0], (w / 2) / math.tan(math.radians(_HFOV_RANGE_DEG[1]) / 2))
        hi = min(_FX_RANGE[1], (w / 2) / math.tan(math.radians(_HFOV_RANGE_DEG[0]) / 2))
        if lo > hi:
            lo, hi = sorted((lo, hi))
        f = math.exp(math.log(lo) + u_fx * (math.log(hi) - math.log(lo)))
    else:
        f = float(fx)
        if not (math.isfinite(f) and f > 0):
            raise InputError(f"fx must be positive and finite, got {fx}")
    fy = f * (1.0 + (u_fy - 0.5) * 0.01)        # near-square pixels
    cx = (w - 1) / 2.0 + (u_cx - 0.5) * 0.06 * w  # principal point off centre by up to 3 %
    cy = (h - 1) / 2.0 + (u_cy - 0.5) * 0.06 * h
    return w, h, f, fy, cx, cy


def inside(p: np.ndarray, lo, hi, margin: float) -> bool:
    return bool(np.all(p > np.asarray(lo) - margin) and np.all(p < np.asarray(hi) + margin))


def clear_of(cam: np.ndarray, ob: Primitive, margin: float) -> bool:
    """Whether ``ob`` leaves the camera ``margin`` metres of room (a plane always does)."""
    if isinstance(ob, Box):
        return not inside(cam, ob.lo, ob.hi, margin)
    if isinstance(ob, Cylinder):
        return not inside(cam, (ob.x - ob.radius, ob.y - ob.radius, ob.z0),
                          (ob.x + ob.radius, ob.y + ob.radius, ob.z1), margin)
    return True


def against_wall(rng: np.random.Generator, wx: float, ly: float, side: int, sx: float,
                 sy: float) -> tuple[float, float]:
    """Corner of an sx-by-sy footprint touching wall ``side`` (x=0, x=wx, y=0, y=ly)."""
    if side == 0:
        return 0.0, rng.uniform(0, max(ly - sy, 1e-3))
    if side == 1:
        return wx - sx, rng.uniform(0, max(ly - sy, 1e-3))
    if side == 2:
        return rng.uniform(0, max(wx - sx, 1e-3)), 0.0
    return rng.uniform(0, max(wx - sx, 1e-3)), ly - sy
