"""World ``v2`` (generator 2.0): rooms and streets with real-world scale statistics.

Metric scale must be recoverable from one image, so the things a robot sees come in the sizes
they have in the world: doors 0.8-0.9 x 2.0-2.1 m, tables 0.72-0.76 m high, chair seats at
0.45 m, shelves with boards every 0.35-0.4 m, ceilings 2.4-3.0 m; cars about 4.5 x 1.8 x 1.5 m,
kerbs 0.12-0.16 m, lanes 3.0-3.5 m with dashes every 9 m, storeys about 3 m. Textures are in
metres (floor tiles 0.3-0.6 m, planks 0.15-0.2 m, paving slabs, storey-aligned facades), so
their size in the image is a cue too. The camera sits where robots carry one (0.3-1.5 m
indoors, 0.5-2.0 m outdoors), looks roughly level, and indoors stands at least 0.8 m from the
walls facing the longest of four random directions, so views of one close surface are rare. Colours, lights and
layouts stay random, since they do not erase scale.

The order of the draws inside each function is part of the output: reordering them changes
every scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .draws import against_wall, clear_of, inside, rand_color
from .scene import Box, Cylinder, Material, Plane, Primitive, box_corners

__all__ = ["Mount", "ROBOT_MOUNT", "RobotCamera", "ROBOT_CAMERA", "indoor_layout",
           "outdoor_layout"]


@dataclass(frozen=True)
class Mount:
    """Where one robot carries its camera: a fixed height and tilt, up to small jitters.

    A robot's camera does not move on its body, so its height above the floor and its tilt
    are the same in every frame it records. Seen from a mount, the floor at a given image row
    always lies at the same distance, which pins metric scale in a way a random pose cannot.

    Attributes:
        height_m: camera height above the floor or road.
        height_jitter_m: half-range of the per-frame variation (suspension, floor unevenness).
        pitch_deg: downward tilt (positive looks down).
        tilt_jitter_deg: half-range of the per-frame variation of pitch and roll.
    """

    height_m: float
    height_jitter_m: float
    pitch_deg: float
    tilt_jitter_deg: float

    def pose(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """``(height, pitch, roll)`` of one frame, angles in radians; three uniform draws."""
        u = rng.uniform(-1.0, 1.0, 3)
        return (self.height_m + float(u[0]) * self.height_jitter_m,
                math.radians(self.pitch_deg + float(u[1]) * self.tilt_jitter_deg),
                math.radians(float(u[2]) * self.tilt_jitter_deg))


#: The camera mount of world ``mount``: a head camera about 1 m up, tilted 3 degrees down.
ROBOT_MOUNT = Mount(height_m=1.0, height_jitter_m=0.02, pitch_deg=3.0, tilt_jitter_deg=1.0)

@dataclass(frozen=True)
class RobotCamera:
    """The one camera a robot records with: its image size and focal length.

    Resizing to a canonical focal length makes every camera's pixels the same angle, but
    cameras still differ in field of view, so the same place in the world lands at a
    different fraction of the image height in each. A model whose only notion of position is
    the fraction of the image (a ViT's interpolated position embedding) reads the horizon's
    row as a scale cue only when the field of view is fixed too. Each unit still has its own
    calibration: fy and the principal point vary as :func:`~.draws.draw_intrinsics` draws them.
    """

    width: int
    height: int
    fx: float


#: The camera of world ``robot``: 320x240 with fx 256 (a 64 degree horizontal field of view,
#: the sample bag's size), on :data:`ROBOT_MOUNT`.
ROBOT_CAMERA = RobotCamera(width=320, height=240, fx=256.0)

_BUDGET = 40   # primitives per scene: the ray caster's cost grows with it

_ASPHALT = [(0.12, 0.12, 0.13), (0.2, 0.2, 0.2), (0.3, 0.28, 0.26), (0.45, 0.43, 0.4)]
_GRASS = [(0.15, 0.35, 0.08), (0.35, 0.45, 0.15), (0.45, 0.38, 0.2), (0.6, 0.55, 0.3)]
_PAINT = [(0.85, 0.85, 0.8), (0.8, 0.7, 0.2)]
_GLASS = [(0.1, 0.14, 0.2), (0.25, 0.35, 0.45), (0.5, 0.6, 0.7)]


def _material(rng: np.random.Generator, scale: float, pattern: str,
              palette: Sequence[tuple] | None = None, axis=(1.0, 0.0, 0.0),
              second: Sequence[tuple] | None = None) -> Material:
    """A material whose pattern has the fixed world size ``scale`` (metres).

    ``pattern`` is ``plain``, ``checker``, ``stripes`` or ``noise``; ``second`` optionally
    fixes the palette of the second colour (glass of a facade, paint of a lane mark).
    """
    a = rand_color(rng) if palette is None else palette[rng.integers(len(palette))]
    if second is not None:
        b = second[rng.integers(len(second))]
    elif rng.random() < 0.5:
        b = tuple(float(np.clip(x * rng.uniform(0.5, 1.5), 0, 1)) for x in a)
    else:
        b = rand_color(rng)
    w = {"plain": (0.0, 0.0, 0.0), "checker": (1.0, 0.0, 0.0), "stripes": (0.0, 1.0, 0.0),
         "noise": (0.0, 0.0, 1.0)}[pattern]
    return Material(color_a=a, color_b=b, checker=w[0], stripes=w[1], noise=w[2],
                    scale=float(scale), stripe_axis=tuple(float(x) for x in axis),
                    phase=tuple(float(x) for x in rng.uniform(0, 10, 3)))


def _surface(rng: np.random.Generator, where: str) -> Material:
    """Floor, wall or ceiling finish at its usual size."""
    if where == "floor":
        pick = rng.choice(["tiles", "planks", "carpet", "plain"], p=[0.35, 0.35, 0.15, 0.15])
        if pick == "tiles":
            return _material(rng, float(rng.choice([0.3, 0.4, 0.5, 0.6])), "checker")
        if pick == "planks":
            axis = (1.0, 0.0, 0.0) if rng.random() < 0.5 else (0.0, 1.0, 0.0)
            return _material(rng, float(rng.uniform(0.15, 0.2)), "stripes", axis=axis)
        return _material(rng, 0.05, "noise" if pick == "carpet" else "plain")
    if where == "ceiling":
        return _material(rng, 0.6, "checker" if rng.random() < 0.3 else "plain")
    pick = rng.choice(["plain", "noise", "stripes"], p=[0.6, 0.25, 0.15])
    return _material(rng, 0.1 if pick == "stripes" else 0.5, str(pick))


def _wall_distance(cam: np.ndarray, yaw: float, room: tuple[float, float]) -> float:
    """Horizontal distance from the camera to the wall it faces at ``yaw``."""
    d = (-math.sin(yaw), math.cos(yaw))
    t = math.inf
    for k in range(2):
        if abs(d[k]) > 1e-9:
            bound = room[k] if d[k] > 0 else 0.0
            t = min(t, (bound - cam[k]) / d[k])
    return t


class _Room:
    """Placement helpers of one room: footprints against walls or free, camera clearance."""

    def __init__(self, rng: np.random.Generator, wx: float, ly: float, cam: np.ndarray):
        self.rng, self.wx, self.ly, self.cam = rng, wx, ly, cam

    def free(self, lo, hi) -> bool:
        return not inside(self.cam, lo, hi, 0.6)

    def against(self, side: int, sx: float, sy: float) -> tuple[float, float]:
        return against_wall(self.rng, self.wx, self.ly, side, sx, sy)

    def anywhere(self, sx: float, sy: float) -> tuple[float, float]:
        return (self.rng.uniform(0, max(self.wx - sx, 1e-3)),
                self.rng.uniform(0, max(self.ly - sy, 1e-3)))


def _legs(x0, y0, sx, sy, top, lw, m) -> list[Primitive]:
    return [Box((lx, ly, 0.0), (lx + lw, ly + lw, top), m)
            for lx, ly in ((x0, y0), (x0 + sx - lw, y0), (x0, y0 + sy - lw),
                           (x0 + sx - lw, y0 + sy - lw))]


def _edge_board(x0, y0, sx, sy, side: int, thick: float, z0: float, z1: float,
                m: Material) -> Box:
    """A board of thickness ``thick`` along edge ``side`` (x0, x0+sx, y0, y0+sy) of a footprint.

    A chair's or a sofa's backrest.
    """
    if side == 0:
        return Box((x0, y0, z0), (x0 + thick, y0 + sy, z1), m)
    if side == 1:
        return Box((x0 + sx - thick, y0, z0), (x0 + sx, y0 + sy, z1), m)
    if side == 2:
        return Box((x0, y0, z0), (x0 + sx, y0 + thick, z1), m)
    return Box((x0, y0 + sy - thick, z0), (x0 + sx, y0 + sy, z1), m)


def _on_wall(room: _Room, side: int, width: float, z0: float, z1: float, proud: float,
             m: Material) -> Box:
    """A flat thing on wall ``side`` (a door, a window), ``proud`` metres off the wall."""
    sx, sy = (proud, width) if side < 2 else (width, proud)
    x0, y0 = room.against(side, sx, sy)
    return Box((x0, y0, z0), (x0 + sx, y0 + sy, z1), m)


def _table(rng, room: _Room, hz: float) -> list[Primitive] | None:
    sx, sy = [(1.2, 0.8), (1.6, 0.8), (0.8, 0.8), (1.8, 0.9), (1.4, 0.7)][rng.integers(5)]
    if rng.random() < 0.5:
        sx, sy = sy, sx
    top = rng.uniform(0.72, 0.76)
    x0, y0 = room.anywhere(sx, sy) if rng.random() < 0.7 else room.against(rng.integers(4), sx, sy)
    if not room.free((x0, y0, 0.0), (x0 + sx, y0 + sy, top)):
        return None
    m_top, m_leg = _material(rng, 0.1, "stripes"), _material(rng, 0.05, "plain")
    out: list[Primitive] = [Box((x0, y0, top - 0.03), (x0 + sx, y0 + sy, top), m_top)]
    out += _legs(x0, y0, sx, sy, top - 0.03, 0.05, m_leg)
    for _ in range(rng.integers(0, 3)):   # cups, books, a monitor: things of known size
        bx, by, bz = [(0.08, 0.08, 0.1), (0.3, 0.22, 0.05), (0.55, 0.06, 0.35)][rng.integers(3)]
        px, py = rng.uniform(x0, x0 + sx - bx), rng.uniform(y0, y0 + sy - by)
        out.append(Box((px, py, top), (px + bx, py + by, top + bz), _material(rng, 0.05, "plain")))
    return out


def _chair(rng, room: _Room, hz: float) -> list[Primitive] | None:
    s = rng.uniform(0.42, 0.48)
    seat = rng.uniform(0.43, 0.47)
    x0, y0 = room.anywhere(s, s)
    if not room.free((x0, y0, 0.0), (x0 + s, y0 + s, 0.9)):
        return None
    m = _material(rng, 0.05, "plain")
    out: list[Primitive] = [Box((x0, y0, seat - 0.04), (x0 + s, y0 + s, seat), m)]
    out += _legs(x0, y0, s, s, seat - 0.04, 0.035, m)
    out.append(_edge_board(x0, y0, s, s, int(rng.integers(4)), 0.04, seat,
                           rng.uniform(0.85, 0.95), m))
    return out


def _shelf(rng, room: _Room, hz: float) -> list[Primitive] | None:
    sw, sd = float(rng.choice([0.8, 1.0, 1.6, 2.0])), rng.uniform(0.3, 0.4)
    sh = float(rng.choice([0.8, 1.2, 1.8, 2.0]))
    side = int(rng.integers(4))
    along_x = side >= 2
    sx, sy = (sw, sd) if along_x else (sd, sw)
    x0, y0 = room.against(side, sx, sy)
    if not room.free((x0, y0, 0.0), (x0 + sx, y0 + sy, sh)):
        return None
    m, b = _material(rng, 0.1, "plain"), 0.02
    if along_x:
        out: list[Primitive] = [Box((x0, y0, 0), (x0 + b, y0 + sy, sh), m),
                                Box((x0 + sx - b, y0, 0), (x0 + sx, y0 + sy, sh), m)]
    else:
        out = [Box((x0, y0, 0), (x0 + sx, y0 + b, sh), m),
               Box((x0, y0 + sy - b, 0), (x0 + sx, y0 + sy, sh), m)]
    n_boards = max(2, int(round(sh / rng.uniform(0.35, 0.4))))
    for i in range(n_boards + 1):
        z = i * (sh - b) / n_boards
        out.append(Box((x0, y0, z), (x0 + sx, y0 + sy, z + b), m))
    return out


def _cabinet(rng, room: _Room, hz: float) -> list[Primitive] | None:
    """A kitchen run, a chest of drawers or a sofa against a wall."""
    sofa = rng.random() < 0.4
    w = rng.uniform(1.8, 2.2) if sofa else 0.6 * int(rng.integers(1, 4))
    d = 0.9 if sofa else rng.uniform(0.45, 0.6)
    side = int(rng.integers(4))
    sx, sy = (w, d) if side >= 2 else (d, w)
    x0, y0 = room.against(side, sx, sy)
    h = 0.45 if sofa else rng.uniform(0.85, 0.9)
    if not room.free((x0, y0, 0.0), (x0 + sx, y0 + sy, 0.85)):
        return None
    m = _material(rng, 0.6 if not sofa else 0.05, "stripes" if not sofa else "plain",
                  axis=(1.0, 0.0, 0.0) if side >= 2 else (0.0, 1.0, 0.0))
    out: list[Primitive] = [Box((x0, y0, 0.0), (x0 + sx, y0 + sy, h), m)]
    if sofa:   # backrest along the wall
        out.append(_edge_board(x0, y0, sx, sy, side, 0.2, h, 0.85, m))
    return out


def _cartons(rng, room: _Room, hz: float) -> list[Primitive] | None:
    e = float(rng.choice([0.3, 0.4, 0.5, 0.6]))
    x0, y0 = room.anywhere(e, e) if rng.random() < 0.5 else room.against(rng.integers(4), e, e)
    n = int(rng.integers(1, 4))
    if not room.free((x0, y0, 0.0), (x0 + e, y0 + e, n * e)):
        return None
    carton = [(0.55, 0.4, 0.25), (0.65, 0.5, 0.32), (0.45, 0.33, 0.2)]
    return [Box((x0, y0, i * e), (x0 + e, y0 + e, (i + 1) * e), _material(rng, 0.05, "plain", carton))
            for i in range(n)]


def _round_things(rng, room: _Room, hz: float) -> list[Primitive] | None:
    """A waste bin, a potted plant or a floor lamp."""
    what = int(rng.integers(3))
    r, h = [(0.15, 0.5), (0.2, 0.4), (0.03, 1.6)][what]
    px, py = rng.uniform(r + 0.05, room.wx - r - 0.05), rng.uniform(r + 0.05, room.ly - r - 0.05)
    if not room.free((px - r, py - r, 0), (px + r, py + r, h)):
        return None
    out: list[Primitive] = [Cylinder(px, py, r, 0.0, h, _material(rng, 0.05, "plain"))]
    if what == 1:
        out.append(Cylinder(px, py, 0.35, h, h + 0.6, _material(rng, 0.1, "noise", _GRASS)))
    elif what == 2:
        out.append(Cylinder(px, py, 0.2, h, h + 0.3, _material(rng, 0.05, "plain")))
    return out


_FURNITURE = (_table, _chair, _shelf, _cabinet, _cartons, _round_things)
_FURNITURE_P = (0.2, 0.2, 0.15, 0.15, 0.15, 0.15)


def indoor_layout(rng: np.random.Generator, max_depth: float, mount: Mount | None = None):
    """Room, camera pose and furniture. All room corners within ``max_depth`` of the camera.

    Without ``mount`` the camera height and tilt are drawn anew per scene (robots of many
    sizes); with one they are that mount's.
    """
    pose = mount.pose(rng) if mount is not None else None
    for _ in range(200):
        wx, ly = rng.uniform(3.0, 8.0), rng.uniform(3.0, 8.0)
        hz = float(rng.choice([2.4, 2.5, 2.6, 2.7, 2.8, 3.0]))
        cam = np.array([rng.uniform(0.8, wx - 0.8), rng.uniform(0.8, ly - 0.8),
                        rng.uniform(0.3, 1.5) if pose is None else pose[0]])
        if np.linalg.norm(box_corners((0, 0, 0), (wx, ly, hz)) - cam, axis=1).max() \
                <= max_depth - 0.05:
            break
    else:  # pragma: no cover - practically unreachable; keep a safe small room
        wx, ly, hz = 4.0, 4.0, 2.6
        cam = np.array([2.0, 2.0, 1.0 if pose is None else pose[0]])
    # Face the longest of four random directions, so a wall rarely fills the view.
    yaws = rng.uniform(0, 2 * math.pi, 4)
    yaw = float(yaws[int(np.argmax([_wall_distance(cam, y, (wx, ly)) for y in yaws]))])
    if pose is None:
        pitch = math.radians(rng.uniform(-10, 20))
        roll = math.radians(rng.uniform(-3, 3))
    else:
        pitch, roll = pose[1], pose[2]

    objs: list[Primitive] = [
        Plane((0, 0, 1), 0.0, _surface(rng, "floor")),
        Plane((0, 0, 1), hz, _surface(rng, "ceiling")),
    ]
    wall = _surface(rng, "wall")   # one paint for the room, as rooms usually are
    objs += [Plane((1, 0, 0), 0.0, wall), Plane((1, 0, 0), wx, wall),
             Plane((0, 1, 0), 0.0, wall), Plane((0, 1, 0), ly, wall)]
    room = _Room(rng, wx, ly, cam)
    for _ in range(int(rng.integers(1, 3))):   # doors
        objs.append(_on_wall(room, int(rng.integers(4)), rng.uniform(0.8, 0.9), 0.0,
                             rng.uniform(2.0, 2.1), 0.04, _material(rng, 0.1, "stripes",
                                                                   axis=(0.0, 0.0, 1.0))))
    for _ in range(int(rng.integers(0, 3))):   # windows
        sill = rng.uniform(0.8, 1.0)
        objs.append(_on_wall(room, int(rng.integers(4)), rng.uniform(1.0, 1.6), sill,
                             sill + rng.uniform(1.2, 1.4), 0.03,
                             _material(rng, 0.5, "plain", _GLASS)))
    n_items = int(rng.integers(4, 11))
    for _ in range(n_items * 3):
        if n_items <= 0:
            break
        make = _FURNITURE[int(rng.choice(len(_FURNITURE), p=_FURNITURE_P))]
        parts = make(rng, room, hz)
        if parts is None or len(objs) + len(parts) > _BUDGET:
            continue
        objs += parts
        n_items -= 1
    return objs, cam, (yaw, pitch, roll), (wx, ly, hz)


def _car(rng, x: float, y: float, heading_y: bool = True) -> list[Primitive]:
    """A car (about 4.5 x 1.8 x 1.5 m), a van or a truck, its length along +y."""
    what = rng.choice(["car", "van", "truck"], p=[0.75, 0.15, 0.1])
    if what == "car":
        w, l, body = rng.uniform(1.75, 1.85), rng.uniform(4.2, 4.8), rng.uniform(0.9, 1.0)
    elif what == "van":
        w, l, body = 2.0, rng.uniform(4.8, 5.4), rng.uniform(1.9, 2.1)
    else:
        w, l, body = 2.5, rng.uniform(7.0, 10.0), rng.uniform(3.2, 3.8)
    paint = _material(rng, 0.5, "plain")
    out: list[Primitive] = [Box((x - w / 2, y, 0.2), (x + w / 2, y + l, body), paint)]
    if what == "car":   # cabin with glass, up to about 1.45-1.5 m
        out.append(Box((x - w / 2 + 0.1, y + 1.0, body), (x + w / 2 - 0.1, y + l - 1.2,
                                                          rng.uniform(1.42, 1.52)),
                       _material(rng, 0.5, "plain", _GLASS)))
    tyre = _material(rng, 0.05, "plain", [(0.05, 0.05, 0.05)])
    for wy in (y + 0.9, y + l - 0.9):   # two axles as wheel cylinders below
        out.append(Cylinder(x, wy, 0.32, 0.0, 0.2, tyre))
    return out


def _facade(rng, storey: float) -> Material:
    """Wall and glass alternating every half storey, aligned with the floors."""
    m = _material(rng, storey / 2, "checker", second=_GLASS)
    return Material(color_a=m.color_a, color_b=m.color_b, checker=1.0, scale=storey / 2,
                    phase=(m.phase[0], m.phase[1], 0.0))


def outdoor_layout(rng: np.random.Generator, mount: Mount | None = None):
    """A street (buildings, kerbs, lanes, cars, poles) or an open field (trees, houses, fences).

    ``mount`` as in :func:`indoor_layout`.
    """
    pose = mount.pose(rng) if mount is not None else None
    cam = np.array([0.0, 0.0, rng.uniform(0.5, 2.0) if pose is None else pose[0]])
    yaw = math.radians(rng.uniform(-20, 20))
    if rng.random() < 0.15:
        yaw += math.radians(rng.choice([-70.0, 70.0]))
    if pose is None:
        pitch = math.radians(rng.uniform(-5, 12))
        roll = math.radians(rng.uniform(-2, 2))
    else:
        pitch, roll = pose[1], pose[2]
    objs: list[Primitive] = []

    def add(parts: list[Primitive]) -> None:
        for ob in parts:
            if len(objs) < _BUDGET and clear_of(cam, ob, 0.5):
                objs.append(ob)

    if rng.random() < 0.6:
        _street(rng, cam, add)
    else:
        _field(rng, cam, add)
    return objs, cam, (yaw, pitch, roll)


def _street(rng, cam: np.ndarray, add) -> None:
    lane = rng.uniform(3.0, 3.5)
    lanes = int(rng.integers(1, 3))          # per direction
    parking = rng.uniform(2.0, 2.5) if rng.random() < 0.6 else 0.0
    hw = lanes * lane + parking
    sw = rng.uniform(1.8, 4.0)
    kerb = rng.uniform(0.12, 0.16)
    cam[0] = rng.uniform(-hw + 1.0, hw - 1.0)
    add([Plane((0, 0, 1), 0.0, _material(rng, 0.05, "noise", _ASPHALT))])
    # Centre dashes (3 m paint, 6 m gap, as one striped strip) and the two edge lines.
    add([Box((-0.06, -30.0, 0.0), (0.06, 400.0, 0.005),
             _material(rng, 9.0, "stripes", _ASPHALT, (0.0, 1.0, 0.0), second=_PAINT))])
    for sgn in (-1, 1):
        x = sgn * (hw - parking - 0.25)
        add([Box((x - 0.06, -30.0, 0.0), (x + 0.06, 400.0, 0.005),
                 _material(rng, 0.5, "plain", _PAINT))])
    for sgn in (-1, 1):   # pavements: paving slabs on a kerb-high slab
        x_in, x_out = sgn * hw, sgn * (hw + sw)
        add([Box((min(x_in, x_out), -30.0, 0.0), (max(x_in, x_out), 400.0, kerb),
                 _material(rng, float(rng.choice([0.3, 0.4, 0.5])), "checker"))])
    for sgn in (-1, 1):
        y = rng.uniform(-25.0, -5.0)
        for _ in range(int(rng.integers(3, 8))):
            storey = rng.uniform(2.9, 3.3)
            length = rng.uniform(8.0, 30.0)
            front = hw + sw + rng.uniform(0.0, 2.0)
            height = storey * int(rng.integers(2, 9))
            x0, x1 = sorted((sgn * front, sgn * (front + rng.uniform(8.0, 15.0))))
            add([Box((x0, y, 0.0), (x1, y + length, height), _facade(rng, storey))])
            y += length + rng.uniform(0.0, 4.0)
    for sgn in (-1, 1):   # parked cars along the kerb, driving cars in the lanes
        y = rng.uniform(-5.0, 15.0)
        for _ in range(int(rng.integers(0, 4)) if parking else 0):
            add(_car(rng, sgn * (hw - 1.1), y))
            y += rng.uniform(5.5, 12.0)
    for _ in range(int(rng.integers(0, 4))):
        x = rng.choice([-1.0, 1.0]) * (parking + lane * (int(rng.integers(lanes)) + 0.5))
        x = float(np.clip(x, -hw + 1.3, hw - 1.3))
        y = rng.uniform(3.0, 70.0)
        if abs(x - cam[0]) > 1.5 or y > 6.0:
            add(_car(rng, x, y))
    y = rng.uniform(0.0, 10.0)
    for _ in range(int(rng.integers(2, 7))):   # street lamps 6-8 m, sign posts 2.5 m
        sgn = rng.choice([-1.0, 1.0])
        x = sgn * (hw + 0.4)
        if rng.random() < 0.6:
            add([Cylinder(x, y, 0.1, 0.0, rng.uniform(6.0, 8.0), _material(rng, 0.1, "plain"))])
        else:
            add([Cylinder(x, y, 0.04, 0.0, 2.5, _material(rng, 0.1, "plain")),
                 Box((x - 0.3, y - 0.02, 2.0), (x + 0.3, y + 0.02, 2.6),
                     _material(rng, 0.1, "plain"))])
        y += rng.uniform(10.0, 30.0)


def _field(rng, cam: np.ndarray, add) -> None:
    add([Plane((0, 0, 1), 0.0, _material(rng, 0.1, "noise", _GRASS))])
    for _ in range(int(rng.integers(4, 12))):
        x, y = rng.uniform(-50, 50), rng.uniform(4, 120)
        trunk_h, tr = rng.uniform(2.0, 4.0), rng.uniform(0.15, 0.4)
        add([Cylinder(x, y, tr, 0.0, trunk_h, _material(rng, 0.1, "stripes", axis=(0, 0, 1)))])
        cr = rng.uniform(1.5, 3.5)
        add([Cylinder(x, y, cr, trunk_h, trunk_h + rng.uniform(2.0, 5.0),
                      _material(rng, 0.3, "noise", _GRASS))])
    for _ in range(int(rng.integers(0, 4))):   # houses: 1-2 storeys of 2.7 m, a door, a roof
        x, y = rng.uniform(-60, 60), rng.uniform(8, 150)
        sx, sy, sz = rng.uniform(7, 12), rng.uniform(7, 12), 2.7 * int(rng.integers(1, 3))
        add([Box((x, y, 0.0), (x + sx, y + sy, sz), _facade(rng, 2.7)),
             Box((x + sx / 2 - 0.45, y - 0.05, 0.0), (x + sx / 2 + 0.45, y, 2.05),
                 _material(rng, 0.1, "plain")),
             Box((x - 0.5, y - 0.5, sz), (x + sx + 0.5, y + sy + 0.5, sz + 0.4),
                 _material(rng, 0.3, "stripes", axis=(0, 0, 1)))])
    for _ in range(int(rng.integers(0, 4))):   # fences 1.0-1.2 m of 0.15 m boards
        x, y = rng.uniform(-30, 30), rng.uniform(4, 60)
        length, hgt = rng.uniform(5, 40), rng.uniform(1.0, 1.2)
        along_x = rng.random() < 0.5
        m = _material(rng, 0.15, "stripes", axis=(1, 0, 0) if along_x else (0, 1, 0))
        hi = (x + length, y + 0.05, hgt) if along_x else (x + 0.05, y + length, hgt)
        add([Box((x, y, 0.0), hi, m)])
    for _ in range(int(rng.integers(0, 5))):   # hay bales: 1.2 m rolls
        x, y = rng.uniform(-20, 20), rng.uniform(4, 40)
        if math.hypot(x - cam[0], y - cam[1]) > 2.0:
            add([Cylinder(x, y, 0.6, 0.0, 1.2, _material(rng, 0.05, "noise", _GRASS))])
