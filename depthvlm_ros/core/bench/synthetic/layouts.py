"""Random scenes: intrinsics, materials, lights and the indoor / outdoor layouts.

Indoor scenes are rooms with boxes, tables, shelves and cylinders; outdoor scenes are a street
(buildings, kerbs, cars, poles) or an open field (trees, houses, fences). Appearance is random
per object (hue, value, texture mix and scale), and so are the light, white balance and sensor
noise, so that brightness says nothing about distance.

Each aspect draws from its own stream (:func:`~.seeds.scene_streams`), so overriding the
resolution or the focal length leaves the 3-D scene and its materials unchanged. The order of
the draws inside each function is part of the output: reordering them changes every scene.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ...errors import InputError
from .constants import KINDS, MAX_DEPTH
from .scene import (Box, Camera, Cylinder, Light, Material, Plane, Primitive, Scene, box_corners,
                    camera_rotation)
from .seeds import scene_streams
from .shading import render

__all__ = ["build_scene", "render_scene"]

# Resolutions drawn by render_scene: widths and the two usual aspects.
_WIDTHS = (256, 320, 384, 448, 512, 640, 768, 800, 1024)
_ASPECTS = (3 / 4, 9 / 16)
_FX_RANGE = (300.0, 1500.0)
_HFOV_RANGE_DEG = (35.0, 100.0)


def _rand_color(rng: np.random.Generator, sat: float = 0.8, lo: float = 0.05,
                hi: float = 0.95) -> tuple[float, float, float]:
    """Random linear RGB: random hue / saturation / value so brightness varies per object."""
    hue = rng.random()
    s = rng.uniform(0.0, sat)
    v = rng.uniform(lo, hi)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    rgb = v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)
    return tuple(float(x) for x in rgb)


def _rand_material(rng: np.random.Generator, scale_range: tuple[float, float],
                   palette: Sequence[tuple] | None = None) -> Material:
    a = _rand_color(rng) if palette is None else palette[rng.integers(len(palette))]
    # Second colour: a variation of the first or an unrelated colour (strong contrast).
    if rng.random() < 0.5:
        b = tuple(float(np.clip(x * rng.uniform(0.4, 1.6), 0, 1)) for x in a)
    else:
        b = _rand_color(rng)
    w = rng.random(3) * (rng.random(3) < 0.6)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Material(color_a=a, color_b=b, checker=float(w[0]), stripes=float(w[1]),
                    noise=float(w[2]),
                    scale=float(math.exp(rng.uniform(*np.log(scale_range)))),
                    stripe_axis=tuple(float(x) for x in axis),
                    phase=tuple(float(x) for x in rng.uniform(0, 10, 3)))


def _rand_light(rng: np.random.Generator, kind: str, room=None) -> Light:
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


def _intrinsics(rng: np.random.Generator, width: int | None, height: int | None,
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


def _inside(p: np.ndarray, lo, hi, margin: float) -> bool:
    return bool(np.all(p > np.asarray(lo) - margin) and np.all(p < np.asarray(hi) + margin))


def _indoor_layout(rng: np.random.Generator, max_depth: float):
    """Room, camera pose and furniture. All room corners within ``max_depth`` of the camera."""
    for _ in range(200):
        wx, ly, hz = rng.uniform(2.5, 8.0), rng.uniform(2.5, 9.0), rng.uniform(2.3, 3.4)
        cam = np.array([rng.uniform(0.4, wx - 0.4), rng.uniform(0.4, ly - 0.4),
                        rng.uniform(0.8, min(2.0, hz - 0.3))])
        corners = box_corners((0, 0, 0), (wx, ly, hz))
        # Depth <= Euclidean distance <= farthest corner (the room is convex).
        if np.linalg.norm(corners - cam, axis=1).max() <= max_depth - 0.05:
            break
    else:  # pragma: no cover - practically unreachable; keep a safe small room
        wx, ly, hz = 4.0, 4.0, 2.6
        cam = np.array([2.0, 2.0, 1.4])
    yaw = rng.uniform(0, 2 * math.pi)
    pitch = math.radians(rng.uniform(-10, 35))
    roll = math.radians(rng.uniform(-4, 4))

    scale = (0.03, 1.2)
    objs: list[Primitive] = [
        Plane((0, 0, 1), 0.0, _rand_material(rng, scale)),       # floor
        Plane((0, 0, 1), hz, _rand_material(rng, scale)),        # ceiling
        Plane((1, 0, 0), 0.0, _rand_material(rng, scale)),
        Plane((1, 0, 0), wx, _rand_material(rng, scale)),
        Plane((0, 1, 0), 0.0, _rand_material(rng, scale)),
        Plane((0, 1, 0), ly, _rand_material(rng, scale)),
    ]
    budget = 40
    keep_out = 0.45   # horizontal clearance around the camera

    def free(lo, hi) -> bool:
        return not _inside(cam, lo, hi, keep_out)

    def against(side, sx, sy):
        """Corner of an sx-by-sy footprint touching wall ``side`` (x=0, x=wx, y=0, y=ly)."""
        if side == 0:
            return 0.0, rng.uniform(0, max(ly - sy, 1e-3))
        if side == 1:
            return wx - sx, rng.uniform(0, max(ly - sy, 1e-3))
        if side == 2:
            return rng.uniform(0, max(wx - sx, 1e-3)), 0.0
        return rng.uniform(0, max(wx - sx, 1e-3)), ly - sy

    def footprint(sx, sy, against_wall: bool):
        if against_wall:
            return against(rng.integers(4), sx, sy)
        return rng.uniform(0, max(wx - sx, 1e-3)), rng.uniform(0, max(ly - sy, 1e-3))

    n_items = rng.integers(3, 10)
    for _ in range(n_items * 3):
        if len(objs) - 6 >= budget - 6 or n_items <= 0:
            break
        what = rng.choice(["box", "table", "shelf", "cylinder"], p=[0.4, 0.25, 0.2, 0.15])
        if what == "box":
            sx, sy, sz = rng.uniform(0.3, 2.0), rng.uniform(0.3, 1.0), rng.uniform(0.3, 2.2)
            if rng.random() < 0.5:
                sx, sy = sy, sx
            sz = min(sz, hz - 0.05)
            x0, y0 = footprint(min(sx, wx - 0.05), min(sy, ly - 0.05), rng.random() < 0.6)
            lo, hi = (x0, y0, 0.0), (x0 + min(sx, wx - 0.05), y0 + min(sy, ly - 0.05), sz)
            if not free(lo, hi):
                continue
            objs.append(Box(lo, hi, _rand_material(rng, scale)))
        elif what == "table":
            if len(objs) + 8 > budget + 6:
                continue
            sx, sy = rng.uniform(0.6, 2.0), rng.uniform(0.5, 1.2)
            if rng.random() < 0.5:
                sx, sy = sy, sx
            sx, sy = min(sx, wx - 0.1), min(sy, ly - 0.1)
            top_h, th = rng.uniform(0.45, 0.8), rng.uniform(0.02, 0.06)
            x0, y0 = footprint(sx, sy, rng.random() < 0.3)
            lo, hi = (x0, y0, 0.0), (x0 + sx, y0 + sy, top_h)
            if not free(lo, hi):
                continue
            m_top, m_leg = _rand_material(rng, scale), _rand_material(rng, scale)
            objs.append(Box((x0, y0, top_h - th), (x0 + sx, y0 + sy, top_h), m_top))
            lw = rng.uniform(0.03, 0.08)
            round_legs = rng.random() < 0.4
            for lx, ly_ in ((x0, y0), (x0 + sx - lw, y0), (x0, y0 + sy - lw),
                            (x0 + sx - lw, y0 + sy - lw)):
                if round_legs:
                    objs.append(Cylinder(lx + lw / 2, ly_ + lw / 2, lw / 2, 0.0, top_h - th, m_leg))
                else:
                    objs.append(Box((lx, ly_, 0.0), (lx + lw, ly_ + lw, top_h - th), m_leg))
            # A few things on the table.
            for _ in range(rng.integers(0, 3)):
                bx, by = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)
                px, py = rng.uniform(x0, x0 + sx - bx), rng.uniform(y0, y0 + sy - by)
                bz = rng.uniform(0.05, 0.4)
                if rng.random() < 0.5:
                    objs.append(Box((px, py, top_h), (px + bx, py + by, top_h + bz),
                                    _rand_material(rng, scale)))
                else:
                    r = min(bx, by) / 2
                    objs.append(Cylinder(px + r, py + r, r, top_h, top_h + bz,
                                         _rand_material(rng, scale)))
        elif what == "shelf":
            if len(objs) + 8 > budget + 6:
                continue
            sw, sd = rng.uniform(0.6, 1.6), rng.uniform(0.25, 0.45)
            sh = min(rng.uniform(1.0, 2.2), hz - 0.1)
            side = rng.integers(4)
            # The shelf's long side runs along the wall it stands against.
            along_x = side >= 2
            sx, sy = (sw, sd) if along_x else (sd, sw)
            x0, y0 = against(side, sx, sy)
            lo, hi = (x0, y0, 0.0), (x0 + sx, y0 + sy, sh)
            if not free(lo, hi):
                continue
            m = _rand_material(rng, scale)
            b = 0.02
            if along_x:
                objs.append(Box((x0, y0, 0), (x0 + b, y0 + sy, sh), m))
                objs.append(Box((x0 + sx - b, y0, 0), (x0 + sx, y0 + sy, sh), m))
            else:
                objs.append(Box((x0, y0, 0), (x0 + sx, y0 + b, sh), m))
                objs.append(Box((x0, y0 + sy - b, 0), (x0 + sx, y0 + sy, sh), m))
            n_boards = int(rng.integers(2, 5))
            for i in range(n_boards + 1):
                z = i * (sh - b) / n_boards
                objs.append(Box((x0, y0, z), (x0 + sx, y0 + sy, z + b), m))
            # Back panel: against the wall, so it shows between the boards.
            if side == 0:
                objs.append(Box((x0, y0, 0), (x0 + b, y0 + sy, sh), _rand_material(rng, scale)))
            elif side == 1:
                objs.append(Box((x0 + sx - b, y0, 0), (x0 + sx, y0 + sy, sh),
                                _rand_material(rng, scale)))
            elif side == 2:
                objs.append(Box((x0, y0, 0), (x0 + sx, y0 + b, sh), _rand_material(rng, scale)))
            else:
                objs.append(Box((x0, y0 + sy - b, 0), (x0 + sx, y0 + sy, sh),
                                _rand_material(rng, scale)))
        else:
            r = rng.uniform(0.05, 0.35)
            zc = rng.uniform(0.3, min(2.0, hz - 0.05))
            px, py = rng.uniform(r, wx - r), rng.uniform(r, ly - r)
            if not free((px - r, py - r, 0), (px + r, py + r, zc)):
                continue
            objs.append(Cylinder(px, py, r, 0.0, zc, _rand_material(rng, scale)))
        n_items -= 1
    return objs[: budget + 6], cam, (yaw, pitch, roll), (wx, ly, hz)


def _outdoor_layout(rng: np.random.Generator):
    """A street (buildings, kerbs, cars, poles) or an open field (trees, houses, fences)."""
    cam = np.array([rng.uniform(-2.5, 2.5), 0.0, rng.uniform(1.2, 3.0)])
    yaw = math.radians(rng.uniform(-25, 25))
    if rng.random() < 0.15:
        yaw += math.radians(rng.choice([-70.0, 70.0]))
    pitch = math.radians(rng.uniform(-5, 15))
    roll = math.radians(rng.uniform(-3, 3))
    big = (0.1, 5.0)
    objs: list[Primitive] = []
    budget = 40

    def add(ob) -> None:
        if len(objs) >= budget:
            return
        if isinstance(ob, Box):
            lo, hi = ob.lo, ob.hi
        elif isinstance(ob, Cylinder):
            lo = (ob.x - ob.radius, ob.y - ob.radius, ob.z0)
            hi = (ob.x + ob.radius, ob.y + ob.radius, ob.z1)
        else:
            objs.append(ob)
            return
        if not _inside(cam, lo, hi, 0.5):
            objs.append(ob)

    street = rng.random() < 0.6
    asphalt = [(0.12, 0.12, 0.13), (0.2, 0.2, 0.2), (0.3, 0.28, 0.26), (0.45, 0.43, 0.4)]
    grass = [(0.15, 0.35, 0.08), (0.35, 0.45, 0.15), (0.45, 0.38, 0.2), (0.6, 0.55, 0.3)]
    add(Plane((0, 0, 1), 0.0, _rand_material(rng, big, asphalt if street else grass)))
    if street:
        hw = rng.uniform(3.0, 8.0)
        sw = rng.uniform(1.5, 4.0)
        kerb = rng.uniform(0.1, 0.18)
        cam[0] = rng.uniform(-hw + 1.0, hw - 1.0)
        for sgn in (-1, 1):
            x_in, x_out = sgn * hw, sgn * (hw + sw)
            add(Box((min(x_in, x_out), -30.0, 0.0), (max(x_in, x_out), 400.0, kerb),
                    _rand_material(rng, (0.2, 2.0))))
        for sgn in (-1, 1):
            y = rng.uniform(-25.0, -5.0)
            for _ in range(int(rng.integers(3, 9))):
                length = rng.uniform(8.0, 35.0)
                front = hw + sw + rng.uniform(0.0, 3.0)
                depth_b = rng.uniform(8.0, 20.0)
                height = rng.uniform(4.0, 40.0)
                x0, x1 = sorted((sgn * front, sgn * (front + depth_b)))
                add(Box((x0, y, 0.0), (x1, y + length, height), _rand_material(rng, big)))
                y += length + rng.uniform(0.0, 6.0)
        for _ in range(int(rng.integers(2, 9))):
            truck = rng.random() < 0.2
            w_, l_, h_ = (2.5, rng.uniform(6, 10), rng.uniform(2.8, 3.8)) if truck else \
                (rng.uniform(1.6, 2.0), rng.uniform(3.8, 5.0), rng.uniform(0.7, 0.9))
            x = rng.uniform(-hw + w_ / 2 + 0.2, hw - w_ / 2 - 0.2)
            y = rng.uniform(-10.0, 90.0)
            m = _rand_material(rng, (0.2, 3.0))
            lo, hi = (x - w_ / 2, y, 0.25), (x + w_ / 2, y + l_, 0.25 + h_)
            if _inside(cam, lo, hi, 1.0):
                continue
            add(Box(lo, hi, m))
            if not truck:   # cabin on top of the car body
                add(Box((x - w_ / 2 + 0.1, y + 1.0, 0.25 + h_), (x + w_ / 2 - 0.1, y + l_ - 1.2,
                                                                    0.25 + h_ + rng.uniform(0.4, 0.6)),
                        _rand_material(rng, (0.2, 3.0))))
            for wy in (y + 0.8, y + l_ - 0.8):   # two axles as wheel cylinders below
                add(Cylinder(x, wy, 0.3, 0.0, 0.25, _rand_material(rng, (0.2, 3.0))))
        y = rng.uniform(0.0, 10.0)
        for _ in range(int(rng.integers(2, 8))):
            sgn = rng.choice([-1.0, 1.0])
            r, hgt = rng.uniform(0.06, 0.2), rng.uniform(3.0, 9.0)
            m = _rand_material(rng, (0.1, 2.0))
            if rng.random() < 0.7:
                add(Cylinder(sgn * (hw + 0.4), y, r, 0.0, hgt, m))
            else:
                x = sgn * (hw + 0.4)
                add(Box((x - r, y - r, 0.0), (x + r, y + r, hgt), m))
            y += rng.uniform(8.0, 30.0)
    else:
        for _ in range(int(rng.integers(4, 14))):
            x, y = rng.uniform(-60, 60), rng.uniform(3, 150)
            trunk_h, tr = rng.uniform(1.5, 5.0), rng.uniform(0.1, 0.4)
            add(Cylinder(x, y, tr, 0.0, trunk_h, _rand_material(rng, (0.05, 1.0))))
            cr = rng.uniform(1.0, 3.5)
            leaf = _rand_material(rng, (0.1, 2.0), grass)
            if rng.random() < 0.5:
                add(Cylinder(x, y, cr, trunk_h, trunk_h + rng.uniform(1.5, 5.0), leaf))
            else:
                add(Box((x - cr, y - cr, trunk_h), (x + cr, y + cr, trunk_h + rng.uniform(1.5, 5.0)),
                        leaf))
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(-80, 80), rng.uniform(8, 200)
            sx, sy, sz = rng.uniform(5, 15), rng.uniform(5, 15), rng.uniform(3, 8)
            add(Box((x, y, 0.0), (x + sx, y + sy, sz), _rand_material(rng, big)))
            add(Box((x - 0.5, y - 0.5, sz), (x + sx + 0.5, y + sy + 0.5, sz + rng.uniform(0.3, 1.5)),
                    _rand_material(rng, big)))
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(-30, 30), rng.uniform(4, 60)
            length = rng.uniform(5, 40)
            hgt = rng.uniform(0.8, 1.6)
            m = _rand_material(rng, (0.05, 1.0))
            if rng.random() < 0.5:
                add(Box((x, y, 0.0), (x + length, y + 0.08, hgt), m))
            else:
                add(Box((x, y, 0.0), (x + 0.08, y + length, hgt), m))
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(-20, 20), rng.uniform(3, 40)
            s = rng.uniform(0.2, 1.5)
            add(Box((x, y, 0.0), (x + s, y + s * rng.uniform(0.5, 2), s * rng.uniform(0.3, 1.0)),
                    _rand_material(rng, (0.05, 1.0))))
    return objs, cam, (yaw, pitch, roll)


def build_scene(seed: int, kind: str, *, width: int | None = None, height: int | None = None,
                fx: float | None = None) -> tuple[Camera, list[Primitive], Light, dict]:
    """The 3-D description of scene ``(seed, kind)`` without rendering it.

    Args:
        seed: any integer.
        kind: ``indoor`` or ``outdoor``.
        width, height, fx: overrides of the random resolution / focal length (the pose, the
            objects and their appearance stay the same).

    Returns:
        ``(camera, objects, light, look)`` where ``look`` holds the sky colours, white
        balance, gamma and noise level.

    Raises:
        InputError: unknown kind or invalid override.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    for name, v in (("width", width), ("height", height)):
        if v is not None and (isinstance(v, bool) or int(v) != v or int(v) < 2 or int(v) > 8192):
            raise InputError(f"{name} must be an integer in [2, 8192], got {v!r}")
    streams = scene_streams(seed, kind)
    r_int, r_lay, r_app = streams.intrinsics, streams.layout, streams.appearance
    w, h, f, fy, cx, cy = _intrinsics(r_int, width, height, fx)
    if kind == "indoor":
        objs, pos, (yaw, pitch, roll), room = _indoor_layout(r_lay, MAX_DEPTH["indoor"])
    else:
        objs, pos, (yaw, pitch, roll) = _outdoor_layout(r_lay)
        room = None
    light = _rand_light(r_app, kind, room)
    R = camera_rotation(yaw, pitch, roll)
    cam = Camera(w, h, f, fy, cx, cy, tuple(float(x) for x in pos),
                 tuple(tuple(float(x) for x in row) for row in R))
    # Sky: from deep blue to overcast grey; horizon a bit lighter than the zenith.
    zen = np.array(_rand_color(r_app, sat=0.6, lo=0.35, hi=0.95))
    zen = 0.5 * zen + 0.5 * np.array([0.35, 0.5, 0.85]) * r_app.uniform(0.6, 1.2)
    hor = np.clip(zen + r_app.uniform(0.05, 0.3), 0, 1)
    look = {
        "sky": (tuple(zen.tolist()), tuple(hor.tolist())),
        "gain": tuple(float(x) for x in r_app.uniform(0.88, 1.12, 3) * r_app.uniform(0.8, 1.25)),
        "gamma": float(r_app.uniform(1.9, 2.5)),
        "noise_sigma": float(r_app.uniform(0.5, 4.0)),
    }
    return cam, objs, light, look


def render_scene(seed: int, kind: str = "indoor", *, width: int | None = None,
                 height: int | None = None, fx: float | None = None, fog: float = 0.0) -> Scene:
    """Generate and render one random scene, deterministically from ``(seed, kind)``.

    Args:
        seed: any integer.
        kind: ``indoor`` (room, depth <= 10 m) or ``outdoor`` (street / field, sky invalid,
            depth <= 80 m).
        width, height: image size override (height alone keeps the random width; width alone
            gives a 4:3 or 16:9 height drawn from the seed).
        fx: focal length override in pixels (fy then stays within 0.5 % of it).
        fog: depth-tied fog density per metre; 0 (default) for training / benchmark data.

    Returns:
        The rendered :class:`Scene`.

    Raises:
        InputError: unknown kind, non-integer seed or invalid override.
    """
    cam, objs, light, look = build_scene(seed, kind, width=width, height=height, fx=fx)
    noise_rng = scene_streams(seed, kind).noise
    rgb, depth = render(cam, objs, light, max_depth=MAX_DEPTH[kind], sky=look["sky"],
                        rng=noise_rng, noise_sigma=look["noise_sigma"], gain=look["gain"],
                        gamma=look["gamma"], fog=fog)
    return Scene(rgb=rgb, depth=depth, fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy, kind=kind,
                 seed=int(seed), max_depth=MAX_DEPTH[kind], camera=cam, objects=tuple(objs))
