"""What a synthetic scene is made of: materials, primitives, camera, light and the result.

Conventions (as in :mod:`depthvlm_ros.core.camera`):

* camera optical frame: x right, y down, z forward; integer pixel coordinates ``(u, v)`` are
  pixel centres, ``u`` the column and ``v`` the row;
* world frame: X, Y horizontal, Z up (metres); the floor / ground is ``Z = 0``;
* depth in metres, ``0`` = invalid (sky, or beyond the per-kind cap of
  :data:`~.constants.MAX_DEPTH`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError

__all__ = [
    "Material",
    "Plane",
    "Box",
    "Cylinder",
    "Primitive",
    "Camera",
    "Light",
    "Scene",
    "camera_rotation",
    "box_corners",
]


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
        object_ids: (H, W) int16 index into ``objects`` of what each pixel shows (-1: sky).
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
    object_ids: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])



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


def box_corners(lo, hi) -> np.ndarray:
    """(8, 3) corners of the axis-aligned box from ``lo`` to ``hi``."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    return np.where(idx == 0, lo, hi)
