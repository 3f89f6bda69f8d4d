"""Random scenes: :func:`build_scene` and :func:`render_scene` for any world.

A *world* is a set of layout rules. ``v2`` (the default, generator 2.0) gives things their
real-world sizes so that metric scale can be read from an image (:mod:`.world_v2`);
``mount`` is v2 seen from one robot's fixed camera mount (height and tilt the same in every
frame, as on a robot); ``robot`` is ``mount`` through that robot's one camera (one image size
and focal length); ``v1`` (generator 1.0, :mod:`.world_v1`) reproduces the earlier files
exactly. Appearance is random
per object (hue, value, texture mix), and so are the light, white balance and sensor noise, so
that brightness says nothing about distance.

Each aspect draws from its own stream (:func:`~.seeds.scene_streams`), so overriding the
resolution or the focal length leaves the 3-D scene and its materials unchanged.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ...errors import InputError
from . import world_v1, world_v2
from .constants import KINDS, MAX_DEPTH, WORLDS
from .draws import draw_intrinsics, rand_color, rand_light
from .scene import Camera, Light, Primitive, Scene, camera_rotation
from .seeds import scene_streams
from .shading import render

__all__ = ["build_scene", "render_scene"]

_MOUNTED = (partial(world_v2.indoor_layout, mount=world_v2.ROBOT_MOUNT),
            partial(world_v2.outdoor_layout, mount=world_v2.ROBOT_MOUNT))

#: (indoor, outdoor) layout function of each world in WORLDS.
_LAYOUTS = {
    "v1": (world_v1.indoor_layout, world_v1.outdoor_layout),
    "v2": (world_v2.indoor_layout, world_v2.outdoor_layout),
    "mount": _MOUNTED,
    "robot": _MOUNTED,   # the same scenes; only the camera (_CAMERAS) differs
}

#: Worlds seen through one camera: the size and focal length every frame has unless overridden.
_CAMERAS = {"robot": world_v2.ROBOT_CAMERA}


def build_scene(seed: int, kind: str, *, width: int | None = None, height: int | None = None,
                fx: float | None = None,
                world: str = "v2") -> tuple[Camera, list[Primitive], Light, dict]:
    """The 3-D description of scene ``(seed, kind)`` without rendering it.

    Args:
        seed: any integer.
        kind: ``indoor`` or ``outdoor``.
        width, height, fx: overrides of the random resolution / focal length (the pose, the
            objects and their appearance stay the same).
        world: ``v2`` (real-world sizes, generator 2.0), ``mount`` (the same rooms and
            streets seen from one robot's fixed camera mount), ``robot`` (``mount`` through
            one camera: its size, and its field of view at any size given) or ``v1``
            (generator 1.0).

    Returns:
        ``(camera, objects, light, look)`` where ``look`` holds the sky colours, white
        balance, gamma and noise level.

    Raises:
        InputError: unknown kind or world, or invalid override.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    if world not in WORLDS:
        raise InputError(f"world must be one of {tuple(WORLDS)}, got {world!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    for name, v in (("width", width), ("height", height)):
        if v is not None and (isinstance(v, bool) or int(v) != v or int(v) < 2 or int(v) > 8192):
            raise InputError(f"{name} must be an integer in [2, 8192], got {v!r}")
    fixed = _CAMERAS.get(world)
    if fixed is not None:
        if width is None and height is None:
            width, height = fixed.width, fixed.height
        if fx is None and width is not None:
            fx = fixed.fx * int(width) / fixed.width   # the camera's field of view at this size
    streams = scene_streams(seed, kind)
    r_int, r_lay, r_app = streams.intrinsics, streams.layout, streams.appearance
    w, h, f, fy, cx, cy = draw_intrinsics(r_int, width, height, fx)
    indoor_layout, outdoor_layout = _LAYOUTS[world]
    if kind == "indoor":
        objs, pos, (yaw, pitch, roll), room = indoor_layout(r_lay, MAX_DEPTH["indoor"])
    else:
        objs, pos, (yaw, pitch, roll) = outdoor_layout(r_lay)
        room = None
    light = rand_light(r_app, kind, room)
    R = camera_rotation(yaw, pitch, roll)
    cam = Camera(w, h, f, fy, cx, cy, tuple(float(x) for x in pos),
                 tuple(tuple(float(x) for x in row) for row in R))
    # Sky: from deep blue to overcast grey; horizon a bit lighter than the zenith.
    zen = np.array(rand_color(r_app, sat=0.6, lo=0.35, hi=0.95))
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
                 height: int | None = None, fx: float | None = None, fog: float = 0.0,
                 world: str = "v2") -> Scene:
    """Generate and render one random scene, deterministically from ``(seed, kind)``.

    Args:
        seed: any integer.
        kind: ``indoor`` (room, depth <= 10 m) or ``outdoor`` (street / field, sky invalid,
            depth <= 80 m).
        width, height: image size override (height alone keeps the random width; width alone
            gives a 4:3 or 16:9 height drawn from the seed).
        fx: focal length override in pixels (fy then stays within 0.5 % of it).
        fog: depth-tied fog density per metre; 0 (default) for training / benchmark data.
        world: a name of :data:`~.constants.WORLDS`, as in :func:`build_scene`.

    Returns:
        The rendered :class:`Scene`.

    Raises:
        InputError: unknown kind or world, non-integer seed or invalid override.
    """
    cam, objs, light, look = build_scene(seed, kind, width=width, height=height, fx=fx,
                                         world=world)
    noise_rng = scene_streams(seed, kind).noise
    rgb, depth, ids = render(cam, objs, light, max_depth=MAX_DEPTH[kind], sky=look["sky"],
                             rng=noise_rng, noise_sigma=look["noise_sigma"], gain=look["gain"],
                             gamma=look["gamma"], fog=fog, return_ids=True)
    return Scene(rgb=rgb, depth=depth, fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy, kind=kind,
                 seed=int(seed), max_depth=MAX_DEPTH[kind], camera=cam, objects=tuple(objs),
                 object_ids=ids)
