"""World ``v1`` (generator 1.0): rooms and streets with loosely sized things.

Indoor scenes are rooms with boxes, tables, shelves and cylinders; outdoor scenes are a street
(buildings, kerbs, cars, poles) or an open field (trees, houses, fences). Sizes come from wide
ranges and textures from random world scales, so this world gives weak metric-scale cues; it
is kept so that data rendered with generator 1.0 can be reproduced exactly.
"""

from __future__ import annotations

import math

import numpy as np

from .draws import against_wall, clear_of, inside, rand_material
from .scene import Box, Cylinder, Plane, Primitive, box_corners

__all__ = ["indoor_layout", "outdoor_layout"]


def indoor_layout(rng: np.random.Generator, max_depth: float):
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
        Plane((0, 0, 1), 0.0, rand_material(rng, scale)),       # floor
        Plane((0, 0, 1), hz, rand_material(rng, scale)),        # ceiling
        Plane((1, 0, 0), 0.0, rand_material(rng, scale)),
        Plane((1, 0, 0), wx, rand_material(rng, scale)),
        Plane((0, 1, 0), 0.0, rand_material(rng, scale)),
        Plane((0, 1, 0), ly, rand_material(rng, scale)),
    ]
    budget = 40
    keep_out = 0.45   # horizontal clearance around the camera

    def free(lo, hi) -> bool:
        return not inside(cam, lo, hi, keep_out)

    def against(side, sx, sy):
        return against_wall(rng, wx, ly, side, sx, sy)

    def footprint(sx, sy, at_wall: bool):
        if at_wall:
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
            objs.append(Box(lo, hi, rand_material(rng, scale)))
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
            m_top, m_leg = rand_material(rng, scale), rand_material(rng, scale)
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
                                    rand_material(rng, scale)))
                else:
                    r = min(bx, by) / 2
                    objs.append(Cylinder(px + r, py + r, r, top_h, top_h + bz,
                                         rand_material(rng, scale)))
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
            m = rand_material(rng, scale)
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
                objs.append(Box((x0, y0, 0), (x0 + b, y0 + sy, sh), rand_material(rng, scale)))
            elif side == 1:
                objs.append(Box((x0 + sx - b, y0, 0), (x0 + sx, y0 + sy, sh),
                                rand_material(rng, scale)))
            elif side == 2:
                objs.append(Box((x0, y0, 0), (x0 + sx, y0 + b, sh), rand_material(rng, scale)))
            else:
                objs.append(Box((x0, y0 + sy - b, 0), (x0 + sx, y0 + sy, sh),
                                rand_material(rng, scale)))
        else:
            r = rng.uniform(0.05, 0.35)
            zc = rng.uniform(0.3, min(2.0, hz - 0.05))
            px, py = rng.uniform(r, wx - r), rng.uniform(r, ly - r)
            if not free((px - r, py - r, 0), (px + r, py + r, zc)):
                continue
            objs.append(Cylinder(px, py, r, 0.0, zc, rand_material(rng, scale)))
        n_items -= 1
    return objs[: budget + 6], cam, (yaw, pitch, roll), (wx, ly, hz)


def outdoor_layout(rng: np.random.Generator):
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
        if len(objs) < budget and clear_of(cam, ob, 0.5):
            objs.append(ob)

    street = rng.random() < 0.6
    asphalt = [(0.12, 0.12, 0.13), (0.2, 0.2, 0.2), (0.3, 0.28, 0.26), (0.45, 0.43, 0.4)]
    grass = [(0.15, 0.35, 0.08), (0.35, 0.45, 0.15), (0.45, 0.38, 0.2), (0.6, 0.55, 0.3)]
    add(Plane((0, 0, 1), 0.0, rand_material(rng, big, asphalt if street else grass)))
    if street:
        hw = rng.uniform(3.0, 8.0)
        sw = rng.uniform(1.5, 4.0)
        kerb = rng.uniform(0.1, 0.18)
        cam[0] = rng.uniform(-hw + 1.0, hw - 1.0)
        for sgn in (-1, 1):
            x_in, x_out = sgn * hw, sgn * (hw + sw)
            add(Box((min(x_in, x_out), -30.0, 0.0), (max(x_in, x_out), 400.0, kerb),
                    rand_material(rng, (0.2, 2.0))))
        for sgn in (-1, 1):
            y = rng.uniform(-25.0, -5.0)
            for _ in range(int(rng.integers(3, 9))):
                length = rng.uniform(8.0, 35.0)
                front = hw + sw + rng.uniform(0.0, 3.0)
                depth_b = rng.uniform(8.0, 20.0)
                height = rng.uniform(4.0, 40.0)
                x0, x1 = sorted((sgn * front, sgn * (front + depth_b)))
                add(Box((x0, y, 0.0), (x1, y + length, height), rand_material(rng, big)))
                y += length + rng.uniform(0.0, 6.0)
        for _ in range(int(rng.integers(2, 9))):
            truck = rng.random() < 0.2
            w_, l_, h_ = (2.5, rng.uniform(6, 10), rng.uniform(2.8, 3.8)) if truck else \
                (rng.uniform(1.6, 2.0), rng.uniform(3.8, 5.0), rng.uniform(0.7, 0.9))
            x = rng.uniform(-hw + w_ / 2 + 0.2, hw - w_ / 2 - 0.2)
            y = rng.uniform(-10.0, 90.0)
            m = rand_material(rng, (0.2, 3.0))
            lo, hi = (x - w_ / 2, y, 0.25), (x + w_ / 2, y + l_, 0.25 + h_)
            if inside(cam, lo, hi, 1.0):
                continue
            add(Box(lo, hi, m))
            if not truck:   # cabin on top of the car body
                add(Box((x - w_ / 2 + 0.1, y + 1.0, 0.25 + h_), (x + w_ / 2 - 0.1, y + l_ - 1.2,
                                                                    0.25 + h_ + rng.uniform(0.4, 0.6)),
                        rand_material(rng, (0.2, 3.0))))
            for wy in (y + 0.8, y + l_ - 0.8):   # two axles as wheel cylinders below
                add(Cylinder(x, wy, 0.3, 0.0, 0.25, rand_material(rng, (0.2, 3.0))))
        y = rng.uniform(0.0, 10.0)
        for _ in range(int(rng.integers(2, 8))):
            sgn = rng.choice([-1.0, 1.0])
            r, hgt = rng.uniform(0.06, 0.2), rng.uniform(3.0, 9.0)
            m = rand_material(rng, (0.1, 2.0))
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
            add(Cylinder(x, y, tr, 0.0, trunk_h, rand_material(rng, (0.05, 1.0))))
            cr = rng.uniform(1.0, 3.5)
            leaf = rand_material(rng, (0.1, 2.0), grass)
            if rng.random() < 0.5:
                add(Cylinder(x, y, cr, trunk_h, trunk_h + rng.uniform(1.5, 5.0), leaf))
            else:
                add(Box((x - cr, y - cr, trunk_h), (x + cr, y + cr, trunk_h + rng.uniform(1.5, 5.0)),
                        leaf))
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(-80, 80), rng.uniform(8, 200)
            sx, sy, sz = rng.uniform(5, 15), rng.uniform(5, 15), rng.uniform(3, 8)
            add(Box((x, y, 0.0), (x + sx, y + sy, sz), rand_material(rng, big)))
            add(Box((x - 0.5, y - 0.5, sz), (x + sx + 0.5, y + sy + 0.5, sz + rng.uniform(0.3, 1.5)),
                    rand_material(rng, big)))
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.uniform(-30, 30), rng.uniform(4, 60)
            length = rng.uniform(5, 40)
            hgt = rng.uniform(0.8, 1.6)
            m = rand_material(rng, (0.05, 1.0))
            if rng.random() < 0.5:
                add(Box((x, y, 0.0), (x + length, y + 0.08, hgt), m))
            else:
                add(Box((x, y, 0.0), (x + 0.08, y + length, hgt), m))
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(-20, 20), rng.uniform(3, 40)
            s = rng.uniform(0.2, 1.5)
            add(Box((x, y, 0.0), (x + s, y + s * rng.uniform(0.5, 2), s * rng.uniform(0.3, 1.0)),
                    rand_material(rng, (0.05, 1.0))))
    return objs, cam, (yaw, pitch, roll)
