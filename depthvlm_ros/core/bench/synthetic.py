"""Procedural synthetic RGB-D scenes with exact z-depth, spatial QA and a benchmark writer.

Scenes are built from a few analytic primitives (planes, axis-aligned boxes, vertical
cylinders) and rendered by vectorised numpy ray casting: one ray per pixel centre, a loop over
objects only. Because every ray is parameterised with a camera-frame direction whose z
component is exactly 1, the ray parameter ``t`` at the hit *is* the z-depth (distance along
the optical axis), so the ground truth is exact up to float32 rounding, with no resampling
and no anti-aliasing that could smear depth across edges.

Conventions (as in :mod:`depthvlm_ros.core.camera`):

* camera optical frame: x right, y down, z forward; integer pixel coordinates ``(u, v)`` are
  pixel centres, ``u`` the column and ``v`` the row;
* world frame: X, Y horizontal, Z up (metres); the floor / ground is ``Z = 0``;
* depth in metres, ``0`` = invalid (sky, or beyond the per-kind cap: 10 m indoors, 80 m
  outdoors).

Colour is deliberately decoupled from depth: random albedos, world-space procedural textures
at random scales, Lambertian shading with a random directional light (plus, indoors, a
ceiling point light whose fall-off depends on the distance to the *light*, not the camera),
random white balance and sensor noise. There is no depth-tied fog unless asked for
(``fog > 0``, used by the tests to show that their colour-vs-depth check can fail).

Everything is deterministic by ``(seed, kind)``. Independent random streams drive the
intrinsics, the layout, the appearance and the noise, so overriding the resolution or the
focal length leaves the 3-D scene and its materials unchanged.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError

__all__ = [
    "GENERATOR_VERSION",
    "KINDS",
    "MAX_DEPTH",
    "DEPTH_SCALE",
    "DENSE_PROMPT",
    "DENSE_SOLUTION",
    "QA_TYPES",
    "Material",
    "Plane",
    "Box",
    "Cylinder",
    "Camera",
    "Light",
    "Scene",
    "QAItem",
    "camera_rotation",
    "raycast",
    "render",
    "build_scene",
    "render_scene",
    "backproject_pixel",
    "make_qa",
    "scene_seed",
    "write_benchmark",
]

#: Bumped whenever the same seed would give different pixels.
GENERATOR_VERSION = "1.0"

KINDS = ("indoor", "outdoor")

#: Depth cap per kind; farther surfaces are still drawn but get depth 0 (invalid), as a
#: range-limited sensor would report them.
MAX_DEPTH = {"indoor": 10.0, "outdoor": 80.0}

#: Raw PNG value per metre. uint16 millimetres stop at 65.535 m, which is below the 80 m
#: outdoor cap, so outdoor maps use the KITTI convention (1/256 m steps, up to 256 m).
DEPTH_SCALE = {"indoor": 1000.0, "outdoor": 256.0}

#: The authors' dense-depth prompt and answer (DepthVLM-Bench examples.jsonl).
DENSE_PROMPT = ("Given this image, estimate the metric depth (in meters, rounded to two "
                "decimal places) for every pixel of the image.")
DENSE_SOLUTION = "OK, I will estimate the depth map of this image."

QA_TYPES = ("point_depth", "region_mean", "region_median", "nearer", "distance_3d")

_KIND_ID = {"indoor": 1, "outdoor": 2}
_EPS_T = 1e-4          # rays start this far in front of the camera (avoid self-hits)
_NEAR = 0.05           # corners closer than this (camera z) disable the screen-rect cull

# Resolutions drawn by render_scene: widths and the two usual aspects.
_WIDTHS = (256, 320, 384, 448, 512, 640, 768, 800, 1024)
_ASPECTS = (3 / 4, 9 / 16)
_FX_RANGE = (300.0, 1500.0)
_HFOV_RANGE_DEG = (35.0, 100.0)


# ----------------------------------------------------------------------------------------------
# Scene description
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Material:
    """Surface appearance: two albedos mixed by a procedural world-space pattern.

    The pattern value in [0, 1] is a weighted blend of a checkerboard, stripes and a smooth
    sinusoidal "noise", each at its own world-space scale, so the mix of textures differs per
    object instead of one texture type per class.

    Attributes:
        color_a, color_b: linear RGB albedos in [0, 1].
        checker, stripes, noise: non-negative pattern weights (normalised at render time;
            all zero gives a plain ``color_a`` surface).
        scale: size in metres of one checker cell / stripe period / noise wavelength.
        stripe_axis: unit 3-vector the stripes vary along.
        phase: 3-vector offset of the pattern in metres.
    """

    color_a: tuple[float, float, float] = (0.6, 0.6, 0.6)
    color_b: tuple[float, float, float] = (0.3, 0.3, 0.3)
    checker: float = 0.0
    stripes: float = 0.0
    noise: float = 0.0
    scale: float = 0.5
    stripe_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)
    phase: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Plane:
    """Infinite plane ``normal . p = offset`` (normal need not point at the camera)."""

    normal: tuple[float, float, float]
    offset: float
    material: Material = field(default_factory=Material)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box from corner ``lo`` to corner ``hi`` (world metres)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        if not all(h > l for l, h in zip(self.lo, self.hi)):
            raise InputError(f"box needs lo < hi on every axis, got lo={self.lo} hi={self.hi}")


@dataclass(frozen=True)
class Cylinder:
    """Vertical (Z-axis) closed cylinder: centre ``(x, y)``, radius, from ``z0`` to ``z1``."""

    x: float
    y: float
    radius: float
    z0: float
    z1: float
    material: Material = field(default_factory=Material)

    def __post_init__(self) -> None:
        if self.radius <= 0 or self.z1 <= self.z0:
            raise InputError(f"cylinder needs radius > 0 and z1 > z0, got r={self.radius} "
                             f"z0={self.z0} z1={self.z1}")


Primitive = Plane | Box | Cylinder


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: intrinsics plus pose (optical frame to world).

    Attributes:
        width, height: image size in pixels.
        fx, fy, cx, cy: intrinsics in pixels (pixel centres at integer coordinates).
        position: camera centre in world metres.
        rotation: 3x3 matrix (nested tuples) whose columns are the optical x, y, z axes
            expressed in the world frame; see :func:`camera_rotation`.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]

    def __post_init__(self) -> None:
        if int(self.width) < 1 or int(self.height) < 1:
            raise InputError(f"image size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0 and math.isfinite(self.fx) and math.isfinite(self.fy)):
            raise InputError(f"focal lengths must be positive and finite, got {self.fx}, {self.fy}")

    @property
    def R(self) -> np.ndarray:  # noqa: N802 - the usual name of a rotation matrix
        return np.asarray(self.rotation, dtype=np.float64)


@dataclass(frozen=True)
class Light:
    """Lighting: ambient + one directional light (+ optional point light)."""

    direction: tuple[float, float, float] = (0.3, -0.4, 0.87)   # towards the light
    diffuse: float = 0.8
    ambient: float = 0.25
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    point_position: tuple[float, float, float] | None = None
    point_power: float = 0.0        # brightness at distance point_radius
    point_radius: float = 2.0


@dataclass
class Scene:
    """One rendered frame.

    Attributes:
        rgb: (H, W, 3) uint8.
        depth: (H, W) float32 z-depth in metres, 0 = invalid.
        fx, fy, cx, cy: intrinsics in pixels.
        kind: ``indoor`` or ``outdoor``.
        seed: the seed it was generated from.
        max_depth: the depth cap that was applied.
        camera: the full camera (pose included).
        objects: the primitives (for inspection and tests).
    """

    rgb: np.ndarray
    depth: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    kind: str
    seed: int
    max_depth: float = math.inf
    camera: Camera | None = None
    objects: tuple = ()

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------

def camera_rotation(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Optical-frame-to-world rotation for a camera with Z-up world.

    With all angles zero the camera looks along world +Y with optical x along world +X and
    optical y along world -Z (down).

    Args:
        yaw: rotation about world Z in radians (positive turns the view from +Y towards -X).
        pitch: downward tilt in radians (positive looks down).
        roll: rotation about the optical axis in radians.

    Returns:
        3x3 float64 matrix whose columns are the optical axes in world coordinates.
    """
    base = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    cp, sp = math.cos(pitch), math.sin(pitch)
    # Tilting the forward axis towards optical +y (down): z -> (0, sin p, cos p).
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])
    cr, sr = math.cos(roll), math.sin(roll)
    spin = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    cy, sy = math.cos(yaw), math.sin(yaw)
    turn = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    return turn @ base @ tilt @ spin


def _ray_dirs(cam: Camera) -> np.ndarray:
    """(3, H, W) float32 world directions whose optical-frame z component is exactly 1."""
    h, w = int(cam.height), int(cam.width)
    xs = (np.arange(w, dtype=np.float64) - cam.cx) / cam.fx
    ys = (np.arange(h, dtype=np.float64) - cam.cy) / cam.fy
    R = cam.R
    # d_world = R @ (x, y, 1): separable in x and y, so no (H, W, 3) matmul is needed.
    d = (R[:, 0, None, None] * xs[None, None, :] + R[:, 1, None, None] * ys[None, :, None]
         + R[:, 2, None, None])
    return d.astype(np.float32)


def _screen_rect(cam: Camera, corners: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel rectangle ``(r0, r1, c0, c1)`` covering the projection of a convex hull's corners.

    Returns the full frame when a corner is near or behind the camera (the projection is then
    unbounded) and None when the hull projects entirely outside the image.
    """
    h, w = int(cam.height), int(cam.width)
    pc = (corners - np.asarray(cam.position)) @ cam.R   # world -> optical frame (R^T p)
    z = pc[:, 2]
    if np.all(z <= 0.0):
        return None
    if np.any(z < _NEAR):
        return 0, h, 0, w
    u = cam.fx * pc[:, 0] / z + cam.cx
    v = cam.fy * pc[:, 1] / z + cam.cy
    c0, c1 = max(0, int(math.floor(u.min())) - 1), min(w, int(math.ceil(u.max())) + 2)
    r0, r1 = max(0, int(math.floor(v.min())) - 1), min(h, int(math.ceil(v.max())) + 2)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _box_corners(lo, hi) -> np.ndarray:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    return np.where(idx == 0, lo, hi)


def _hit_box(o: np.ndarray, inv: Sequence[np.ndarray], lo, hi) -> np.ndarray:
    """Slab method; ``inv`` are 1/direction per axis (finite: zeros were nudged)."""
    tnear = None
    tfar = None
    for a in range(3):
        t1 = float(lo[a] - o[a]) * inv[a]
        t2 = float(hi[a] - o[a]) * inv[a]
        lo_t, hi_t = np.minimum(t1, t2), np.maximum(t1, t2)
        tnear = lo_t if tnear is None else np.maximum(tnear, lo_t)
        tfar = hi_t if tfar is None else np.minimum(tfar, hi_t)
    # Camera outside the box: entry point; inside (not generated, but handled): exit point.
    t = np.where(tnear > _EPS_T, tnear, tfar)
    ok = (tnear <= tfar) & (t > _EPS_T)
    return np.where(ok, t, np.float32(np.inf))


def _hit_cylinder(o: np.ndarray, d: Sequence[np.ndarray], cyl: Cylinder) -> np.ndarray:
    ox, oy = float(o[0] - cyl.x), float(o[1] - cyl.y)
    dx, dy, dz = d
    a = dx * dx + dy * dy
    b = 2.0 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - cyl.radius ** 2
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = np.sqrt(np.maximum(disc, 0.0))
        # Near root when outside; far root would be the inside wall (camera never inside).
        t_side = (-b - sq) / (2.0 * a)
        if c < 0:  # camera inside the infinite cylinder: the near root is behind it
            t_side = (-b + sq) / (2.0 * a)
        z = o[2] + t_side * dz
        side_ok = (disc >= 0) & (a > 0) & (t_side > _EPS_T) & (z >= cyl.z0) & (z <= cyl.z1)
        t = np.where(side_ok, t_side, np.float32(np.inf))
        r2 = float(cyl.radius) ** 2
        for zc in (cyl.z0, cyl.z1):
            tc = (zc - o[2]) / dz
            px, py = ox + tc * dx, oy + tc * dy
            cap_ok = (tc > _EPS_T) & (px * px + py * py <= r2)
            t = np.where(cap_ok & (tc < t), tc, t)
    return t.astype(np.float32, copy=False)


def raycast(cam: Camera, objects: Sequence[Primitive]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast one ray per pixel centre and find the nearest surface.

    Args:
        cam: the camera.
        objects: primitives; their index is the returned object id.

    Returns:
        ``(t, ids, dirs)``: (H, W) float32 z-depth of the nearest hit (``inf`` where nothing is
        hit), (H, W) int16 object index (-1 for none) and the (3, H, W) float32 world ray
        directions used (optical z component 1, so ``hit = position + t * dir``).
    """
    if len(objects) > np.iinfo(np.int16).max:
        raise InputError(f"too many objects: {len(objects)}")
    h, w = int(cam.height), int(cam.width)
    dirs = _ray_dirs(cam)
    # Python floats: numpy float64 scalars would upcast the float32 pixel arrays (NEP 50).
    o = [float(x) for x in cam.position]
    best = np.full((h, w), np.inf, dtype=np.float32)
    ids = np.full((h, w), -1, dtype=np.int16)
    # 1/d with exact zeros nudged: the slab method then needs no special cases (0 * inf).
    safe = np.where(np.abs(dirs) < 1e-12, np.float32(1e-12), dirs)
    inv = 1.0 / safe
    for k, ob in enumerate(objects):
        if isinstance(ob, Plane):
            n = np.asarray(ob.normal, dtype=np.float64)
            denom = n[0] * dirs[0] + n[1] * dirs[1] + n[2] * dirs[2]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = ((float(ob.offset) - float(n @ np.asarray(o))) / denom).astype(np.float32)
            t = np.where(t > _EPS_T, t, np.float32(np.inf))
            rect = (0, h, 0, w)
        else:
            if isinstance(ob, Box):
                corners = _box_corners(ob.lo, ob.hi)
            elif isinstance(ob, Cylinder):
                r = ob.radius
                corners = _box_corners((ob.x - r, ob.y - r, ob.z0), (ob.x + r, ob.y + r, ob.z1))
            else:
                raise InputError(f"unknown primitive {type(ob).__name__}")
            rect = _screen_rect(cam, corners)
            if rect is None:
                continue
            r0, r1, c0, c1 = rect
            if isinstance(ob, Box):
                t = _hit_box(o, [x[r0:r1, c0:c1] for x in inv], ob.lo, ob.hi)
            else:
                t = _hit_cylinder(o, [x[r0:r1, c0:c1] for x in dirs], ob)
        r0, r1, c0, c1 = rect
        bv, iv = best[r0:r1, c0:c1], ids[r0:r1, c0:c1]
        closer = t < bv
        bv[closer] = t[closer]
        iv[closer] = k
    return best, ids, dirs


# ----------------------------------------------------------------------------------------------
# Shading
# ----------------------------------------------------------------------------------------------

def _normal_of(ob: Primitive, q: np.ndarray) -> np.ndarray:
    """(3, M) unit normals of primitive ``ob`` at its hit points ``q`` (3, M)."""
    m = q.shape[1]
    if isinstance(ob, Plane):
        nv = np.asarray(ob.normal, dtype=np.float32)
        return np.broadcast_to((nv / np.linalg.norm(nv))[:, None], (3, m)).copy()
    out = np.zeros_like(q)
    if isinstance(ob, Box):
        lo, hi = np.asarray(ob.lo, np.float32), np.asarray(ob.hi, np.float32)
        rel = (q - ((lo + hi) / 2)[:, None]) / ((hi - lo) / 2)[:, None]
        # The face hit is the axis where the point is farthest out in box-relative units.
        ax = np.argmax(np.abs(rel), axis=0)
        cols = np.arange(m)
        out[ax, cols] = np.sign(rel[ax, cols])
        return out
    tol = 1e-3 * max(1.0, ob.z1 - ob.z0)
    out[0] = q[0] - ob.x
    out[1] = q[1] - ob.y
    rad = np.sqrt(out[0] ** 2 + out[1] ** 2)
    top, bot = q[2] >= ob.z1 - tol, q[2] <= ob.z0 + tol
    cap = (top | bot) & (rad < ob.radius * (1 - 1e-3))
    out[:2] /= np.maximum(rad, 1e-9)
    out[:, cap] = 0.0
    out[2, cap & top] = 1.0
    out[2, cap & bot & ~top] = -1.0
    return out


def _albedo_of(mat: Material, q: np.ndarray, n: np.ndarray) -> np.ndarray:
    """(M, 3) albedo of material ``mat`` at points ``q`` (3, M) with normals ``n`` (3, M)."""
    ca = np.asarray(mat.color_a, np.float32)
    total = mat.checker + mat.stripes + mat.noise
    if total <= 0:
        return np.broadcast_to(ca, (q.shape[1], 3))
    c = (q + np.asarray(mat.phase, np.float32)[:, None]) * np.float32(1.0 / mat.scale)
    val = np.zeros(q.shape[1], np.float32)
    if mat.checker > 0:
        # Checker on the two coordinates tangent to the surface (drop the normal's dominant
        # axis), so a plane lying exactly on a cell boundary does not flicker.
        cell = np.floor(c).astype(np.int32)
        dom = np.argmax(np.abs(n), axis=0)
        parity = (cell.sum(axis=0) - cell[dom, np.arange(q.shape[1])]) & 1
        val += np.float32(mat.checker) * parity
    if mat.stripes > 0:
        ax = np.asarray(mat.stripe_axis, np.float32)
        val += np.float32(mat.stripes) * (0.5 + 0.5 * np.sin(np.float32(2 * np.pi) * (ax @ c)))
    if mat.noise > 0:
        nz = (np.sin(2.1 * c[0] + 1.3 * c[1]) * np.sin(1.7 * c[1] - 2.3 * c[2] + 0.5)
              + 0.5 * np.sin(4.3 * c[2] + 3.1 * c[0] + 1.0))
        val += np.float32(mat.noise) * np.clip(0.5 + nz / 3.0, 0.0, 1.0)
    val = (val / np.float32(total))[:, None]
    cb = np.asarray(mat.color_b, np.float32)
    return ca[None, :] * (1 - val) + cb[None, :] * val


def render(cam: Camera, objects: Sequence[Primitive], light: Light = Light(), *,
           max_depth: float = math.inf, sky: tuple = ((0.45, 0.6, 0.85), (0.85, 0.88, 0.92)),
           rng: np.random.Generator | None = None, noise_sigma: float = 0.0,
           gain: tuple[float, float, float] = (1.0, 1.0, 1.0), gamma: float = 2.2,
           fog: float = 0.0, fog_color: tuple = (0.8, 0.8, 0.8)) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast and shade a scene.

    Args:
        cam: the camera.
        objects: primitives.
        light: lighting.
        max_depth: hits farther than this are drawn but get depth 0 (invalid).
        sky: (zenith, horizon) linear RGB of rays that hit nothing (depth 0).
        rng: generator for the sensor noise (None: no noise).
        noise_sigma: Gaussian noise in 8-bit units.
        gain: per-channel white balance.
        gamma: display gamma.
        fog: density per metre of a depth-tied fog (0 = none). Only for experiments: it
            makes brightness a monotone function of depth, which the generator avoids.
        fog_color: linear RGB the fog tends to.

    Returns:
        ``(rgb, depth)``: (H, W, 3) uint8 and (H, W) float32 metres (0 invalid).
    """
    h, w = int(cam.height), int(cam.width)
    t, ids, dirs = raycast(cam, objects)
    hit = ids >= 0
    lin = np.empty((h, w, 3), dtype=np.float32)
    miss = ~hit
    if miss.any():
        # Sky: blend by ray elevation (independent of anything's distance).
        dm = dirs[:, miss]
        elev = np.clip(dm[2] / np.sqrt(np.einsum("ij,ij->j", dm, dm)), 0.0, 1.0) ** 0.6
        zen, hor = np.asarray(sky[0], np.float32), np.asarray(sky[1], np.float32)
        lin[miss] = hor[None, :] * (1 - elev[:, None]) + zen[None, :] * elev[:, None]
    if hit.any():
        flat = np.flatnonzero(hit)
        hid = ids.reshape(-1)[flat]
        # Group pixels by object (stable radix sort of int16) so that every object is shaded
        # on one contiguous slice, with its material parameters as scalars.
        order = np.argsort(hid, kind="stable")
        flat, hid = flat[order], hid[order]
        th = t.reshape(-1)[flat]
        dh = dirs.reshape(3, -1)[:, flat]
        p = np.asarray(cam.position, np.float32)[:, None] + th[None, :] * dh
        n = np.empty_like(p)
        albedo = np.empty((p.shape[1], 3), np.float32)
        bounds = np.searchsorted(hid, np.arange(len(objects) + 1))
        for k in np.flatnonzero(np.diff(bounds)):
            sl = slice(bounds[k], bounds[k + 1])
            nk = _normal_of(objects[k], p[:, sl])
            # Face the normal towards the viewer (room walls are seen from inside).
            nk[:, np.einsum("ij,ij->j", nk, dh[:, sl]) > 0] *= -1
            n[:, sl] = nk
            albedo[sl] = _albedo_of(objects[k].material, p[:, sl], nk)
        ldir = np.asarray(light.direction, np.float32)
        ldir = ldir / np.linalg.norm(ldir)
        lam = np.maximum(ldir @ n, 0.0)
        shade = light.ambient + light.diffuse * lam
        if light.point_position is not None and light.point_power > 0:
            lp = np.asarray(light.point_position, np.float32)[:, None] - p
            dist2 = np.einsum("ij,ij->j", lp, lp)
            cosl = np.maximum(np.einsum("ij,ij->j", n, lp) / np.sqrt(np.maximum(dist2, 1e-9)), 0)
            shade = shade + light.point_power * cosl / (1.0 + dist2 / light.point_radius ** 2)
        col = albedo * shade[:, None] * np.asarray(light.color, np.float32)[None, :]
        if fog > 0:
            f = np.exp(-fog * th)[:, None]
            col = col * f + np.asarray(fog_color, np.float32)[None, :] * (1 - f)
        lin.reshape(-1, 3)[flat] = col
    lin *= np.asarray(gain, np.float32)[None, None, :]
    # Gamma through a 4096-entry table: much cheaper than a per-pixel power and far finer
    # than the 8-bit output.
    lut = (np.linspace(0.0, 1.0, 4096, dtype=np.float64) ** (1.0 / gamma) * 255.0).astype(np.float32)
    idx = np.clip(lin, 0.0, 1.0)
    idx *= 4095.0
    img = lut[idx.astype(np.int16)]
    if rng is not None and noise_sigma > 0:
        img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(noise_sigma)
    rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    depth = np.where(hit & (t <= max_depth), t, np.float32(0.0)).astype(np.float32)
    return rgb, depth


# ----------------------------------------------------------------------------------------------
# Random scenes
# ----------------------------------------------------------------------------------------------

def _streams(seed: int, kind: str) -> list[np.random.Generator]:
    """Independent generators: intrinsics, layout, appearance, sensor noise, QA."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, _KIND_ID[kind], 0x5EED])
    return [np.random.default_rng(s) for s in ss.spawn(5)]


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
        corners = _box_corners((0, 0, 0), (wx, ly, hz))
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
    r_int, r_lay, r_app, _, _ = _streams(seed, kind)
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
    noise_rng = _streams(seed, kind)[3]
    rgb, depth = render(cam, objs, light, max_depth=MAX_DEPTH[kind], sky=look["sky"],
                        rng=noise_rng, noise_sigma=look["noise_sigma"], gain=look["gain"],
                        gamma=look["gamma"], fog=fog)
    return Scene(rgb=rgb, depth=depth, fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy, kind=kind,
                 seed=int(seed), max_depth=MAX_DEPTH[kind], camera=cam, objects=tuple(objs))


# ----------------------------------------------------------------------------------------------
# Spatial question / answer items
# ----------------------------------------------------------------------------------------------

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
    h, w = d.shape

    def pick() -> tuple[int, int]:
        i = int(cand[rng.integers(cand.size)])
        return i % w, i // w      # (col, row)

    def z(p) -> float:
        return float(d[p[1], p[0]])

    items: list[QAItem] = []
    start = int(rng.integers(len(types)))
    for j in range(n):
        item = None
        # Try the scheduled type first; when the map cannot support it (e.g. no pair with a
        # clear depth gap for "nearer") fall back to the next type rather than return fewer.
        for attempt in range(len(types) * 40):
            kind = types[(start + j + attempt // 40) % len(types)]
            if kind == "point_depth":
                p = pick()
                val = z(p)
                item = QAItem(kind, (f"How far is the point at pixel (u={p[0]}, v={p[1]}) from "
                                     "the camera? Give its depth along the camera's optical axis "
                                     "in meters, rounded to two decimal places."),
                              f"{_fmt(val)} meters", val, (p,), (val,))
            elif kind in ("region_mean", "region_median"):
                half = int(rng.integers(2, max(3, min(h, w) // 16) + 1))
                c, r = pick()
                c0, c1 = max(0, c - half), min(w - 1, c + half)
                r0, r1 = max(0, r - half), min(h - 1, r + half)
                patch = d[r0:r1 + 1, c0:c1 + 1]
                if not np.all(patch > 0):
                    continue
                stat = "mean" if kind == "region_mean" else "median"
                val = float(patch.mean() if stat == "mean" else np.median(patch))
                corners = ((c0, r0), (c1, r1))
                item = QAItem(kind, (f"What is the {stat} depth, in meters, of the image region "
                                     f"with top-left pixel (u={c0}, v={r0}) and bottom-right pixel "
                                     f"(u={c1}, v={r1}) (inclusive)? Round to two decimal places."),
                              f"{_fmt(val)} meters", val, corners, tuple(z(q) for q in corners),
                              (c0, r0, c1, r1))
            elif kind == "nearer":
                a, b = pick(), pick()
                za, zb = z(a), z(b)
                # A clear margin so the answer does not hinge on depth-map precision.
                if a == b or abs(za - zb) < max(0.1, 0.1 * min(za, zb)):
                    continue
                ans = "A" if za < zb else "B"
                item = QAItem(kind, (f"Two points are marked: A at pixel (u={a[0]}, v={a[1]}) "
                                     f"and B at pixel (u={b[0]}, v={b[1]}). Which one is closer "
                                     "to the camera? Answer A or B."),
                              (f"{ans}. Point A is {_fmt(za)} meters and point B is {_fmt(zb)} "
                               "meters from the camera."), ans, (a, b), (za, zb))
            elif kind == "distance_3d":
                a, b = pick(), pick()
                if a == b:
                    continue
                pa = backproject_pixel(a[0], a[1], z(a), fx, fy, cx, cy)
                pb = backproject_pixel(b[0], b[1], z(b), fx, fy, cx, cy)
                val = float(np.linalg.norm(pa - pb))
                if val < 0.05:
                    continue
                item = QAItem(kind, (f"What is the straight-line 3D distance, in meters, between "
                                     f"the point at pixel (u={a[0]}, v={a[1]}) and the point at "
                                     f"pixel (u={b[0]}, v={b[1]})? Round to two decimal places."),
                              f"{_fmt(val)} meters", val, (a, b), (z(a), z(b)))
            if item is not None:
                break
        if item is not None:
            items.append(item)
    return items


# ----------------------------------------------------------------------------------------------
# Benchmark writer
# ----------------------------------------------------------------------------------------------

def scene_seed(base_seed: int, kind: str, index: int) -> int:
    """Seed of the ``index``-th ``kind`` image of a benchmark generated with ``base_seed``."""
    ss = np.random.SeedSequence([int(base_seed) & 0xFFFFFFFFFFFFFFFF, _KIND_ID[kind], int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def _quantise(depth: np.ndarray, scale: float) -> np.ndarray:
    raw = np.rint(depth.astype(np.float64) * scale)
    return np.clip(raw, 0, 65535).astype(np.uint16)


def _one_image(task: tuple) -> tuple[list[dict], tuple[float, float]]:
    """Render, save and annotate one image (runs in a worker process when workers > 1)."""
    (out_dir, kind, index, sseed, width, height, fx, image_format, n_points, n_qa) = task
    from PIL import Image  # local: keeps importing this module light

    t0, c0 = time.perf_counter(), time.process_time()
    sc = render_scene(sseed, kind, width=width, height=height, fx=fx)
    # Wall and CPU time: on a shared machine the CPU time is the fairer speed measure.
    t_render = (time.perf_counter() - t0, time.process_time() - c0)
    stem = f"{kind}_{index:06d}"
    ext = "jpg" if image_format in ("jpg", "jpeg") else "png"
    out = Path(out_dir)
    img_rel, dep_rel = f"rgb/{stem}.{ext}", f"depth/{stem}.png"
    if ext == "jpg":
        Image.fromarray(sc.rgb).save(out / img_rel, quality=95)
    else:
        Image.fromarray(sc.rgb).save(out / img_rel, compress_level=3)
    scale = DEPTH_SCALE[kind]
    raw = _quantise(sc.depth, scale)
    Image.fromarray(raw).save(out / dep_rel, compress_level=3)
    # Annotations use the depth as stored, so they can be recomputed from the PNG exactly.
    dq = raw.astype(np.float64) / scale
    qa_rng = _streams(sseed, kind)[4]
    h, w = dq.shape
    base = {
        "scene_id": stem,
        "image": img_rel,
        "depth_path": dep_rel,
        "depth_scale": scale,
        "original_rgb_size": [w, h],
        "original_depth_size": [w, h],
        "original_fx": round(sc.fx, 4),
        "canonical_fx": 1000.0,
        "canonical_size": [max(1, round(w * 1000.0 / sc.fx)), max(1, round(h * 1000.0 / sc.fx))],
        "fy": round(sc.fy, 4),
        "cx": round(sc.cx, 4),
        "cy": round(sc.cy, 4),
        "depth_type": "z_depth",
        "domain": kind,
        "dataset": f"synthetic_{kind}",
        "scene_seed": sseed,
        "generator": f"depthvlm_ros.synthetic {GENERATOR_VERSION}",
    }
    # Intrinsics in the file are rounded; QA geometry must use exactly those numbers.
    fx_r, fy_r, cx_r, cy_r = base["original_fx"], base["fy"], base["cx"], base["cy"]
    lines = []
    valid = np.flatnonzero(dq > 0)
    if valid.size:
        pts = valid[qa_rng.choice(valid.size, size=min(n_points, valid.size), replace=False)]
        coords = [[int(i % w), int(i // w)] for i in pts]
        lines.append({**base, "prompt": DENSE_PROMPT, "solution": DENSE_SOLUTION,
                      "pixel_coords": coords,
                      "depth": [round(float(dq[r, c]), 6) for c, r in coords],
                      "qa_type": "dense_depth"})
    for item in make_qa(dq, fx_r, fy_r, cx_r, cy_r, qa_rng, n=n_qa):
        line = {**base, "prompt": item.prompt, "solution": item.solution,
                "pixel_coords": [list(p) for p in item.pixel_coords],
                "depth": [round(x, 6) for x in item.depth], "qa_type": item.qa_type,
                "answer": item.answer if isinstance(item.answer, str) else round(item.answer, 6)}
        if item.region is not None:
            line["region"] = list(item.region)
        lines.append(line)
    return lines, t_render


def write_benchmark(out_dir: str | os.PathLike, n_indoor: int, n_outdoor: int, seed: int = 0, *,
                    width: int | None = None, height: int | None = None,
                    fx: float | None = None, image_format: str = "png", points_per_image: int = 10,
                    qa_per_image: int = 4, workers: int = 1, progress: bool = True,
                    jsonl_name: str = "synthetic.jsonl", split_by_kind: bool = True) -> dict:
    """Generate a synthetic DepthVLM-Bench folder.

    Layout::

        out_dir/rgb/<kind>_<index>.png|jpg   colour
        out_dir/depth/<kind>_<index>.png     uint16 depth (value / depth_scale = metres, 0 invalid)
        out_dir/synthetic.jsonl              all annotations (authors' fields + our extras)
        out_dir/synthetic_indoor.jsonl       the indoor lines (the bench runner matches GT
        out_dir/synthetic_outdoor.jsonl      range and domain from these names)
        out_dir/meta.json                    version, seeds, counts, timing

    Per image: one dense-depth line (the authors' prompt, ``points_per_image`` sample points)
    and ``qa_per_image`` spatial QA lines (``qa_type`` says which).

    Args:
        out_dir: output folder (created; existing files with the same names are overwritten).
        n_indoor, n_outdoor: number of images per kind.
        seed: base seed; image ``i`` of ``kind`` uses :func:`scene_seed` ``(seed, kind, i)``.
        width, height, fx: overrides passed to :func:`render_scene`.
        image_format: ``png`` or ``jpg``.
        points_per_image: sample points of the dense line.
        qa_per_image: QA lines per image.
        workers: processes (1 = in this process). Output does not depend on it.
        progress: show a tqdm bar.
        jsonl_name: name of the combined annotation file.
        split_by_kind: also write ``synthetic_<kind>.jsonl``.

    Returns:
        The metadata written to ``meta.json``: ``frames_per_s`` is frames per second of
        (wall-clock) render time in one process, ``cpu_frames_per_s`` the same per CPU second
        (fairer on a busy machine), ``wall_frames_per_s`` end to end with file writing.

    Raises:
        InputError: negative counts, nothing to do, bad format or worker count.
    """
    for name, v in (("n_indoor", n_indoor), ("n_outdoor", n_outdoor),
                    ("points_per_image", points_per_image), ("qa_per_image", qa_per_image)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"{name} must be a non-negative integer, got {v!r}")
    if n_indoor + n_outdoor == 0:
        raise InputError("nothing to generate: n_indoor + n_outdoor is 0")
    if image_format not in ("png", "jpg", "jpeg"):
        raise InputError(f"image_format must be png or jpg, got {image_format!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    # Validate overrides once, up front, instead of failing inside a worker.
    build_scene(0, "indoor", width=width, height=height, fx=fx)
    out = Path(out_dir)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), kind, i, scene_seed(seed, kind, i), width, height, fx, image_format,
              points_per_image, qa_per_image)
             for kind, count in (("indoor", n_indoor), ("outdoor", n_outdoor))
             for i in range(count)]
    t0 = time.perf_counter()
    render_s = render_cpu_s = 0.0
    results: list[list[dict]] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc="synthetic", unit="img")
    try:
        if workers == 1:
            it: Iterable = map(_one_image, tasks)
            pool = None
        else:
            import multiprocessing as mp
            pool = mp.get_context("spawn").Pool(int(workers))
            it = pool.imap(_one_image, tasks, chunksize=4)
        try:
            for lines, tr in it:
                results.append(lines)
                render_s += tr[0]
                render_cpu_s += tr[1]
                if bar is not None:
                    bar.update(1)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    all_lines = [ln for lines in results for ln in lines]
    files = {jsonl_name: all_lines}
    if split_by_kind:
        for kind in KINDS:
            sub = [ln for ln in all_lines if ln["domain"] == kind]
            if sub:
                files[f"synthetic_{kind}.jsonl"] = sub
    for name, lines in files.items():
        with open(out / name, "w", encoding="utf-8") as fh:
            for ln in lines:
                fh.write(json.dumps(ln, ensure_ascii=False) + "\n")
    n = len(tasks)
    meta = {
        "generator": "depthvlm_ros.core.bench.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "scene_seed_rule": "numpy SeedSequence([seed, kind_id (indoor 1, outdoor 2), index])"
                           ".generate_state(1, uint32)[0]",
        "n_indoor": int(n_indoor),
        "n_outdoor": int(n_outdoor),
        "n_lines": len(all_lines),
        "qa_counts": {t: sum(1 for ln in all_lines if ln["qa_type"] == t)
                      for t in ("dense_depth",) + QA_TYPES},
        "width": width, "height": height, "fx": fx,
        "image_format": "jpg" if image_format == "jpeg" else image_format,
        "depth_scale": DEPTH_SCALE,
        "max_depth": MAX_DEPTH,
        "workers": int(workers),
        "render_seconds": round(render_s, 3),
        "render_cpu_seconds": round(render_cpu_s, 3),
        "wall_seconds": round(wall, 3),
        "frames_per_s": round(n / render_s, 2) if render_s > 0 else None,
        "cpu_frames_per_s": round(n / render_cpu_s, 2) if render_cpu_s > 0 else None,
        "wall_frames_per_s": round(n / wall, 2) if wall > 0 else None,
        "files": sorted(files),
    }
    with open(out / "meta.json", "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    return meta
