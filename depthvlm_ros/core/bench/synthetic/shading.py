"""Shading: surface normals, procedural albedo and the final 8-bit image with its depth.

Colour is deliberately decoupled from depth: albedos come from world-space procedural
textures, shading is Lambertian with a directional light (plus, indoors, a point light whose
fall-off depends on the distance to the *light*, not the camera), and the sky is blended by ray
elevation. There is no depth-tied fog unless asked for (``fog > 0``, used by the tests to show
that their colour-vs-depth check can fail).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .raycast import group_by_object, raycast
from .scene import Box, Camera, Light, Material, Plane, Primitive

__all__ = ["render"]


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
           fog: float = 0.0, fog_color: tuple = (0.8, 0.8, 0.8),
           return_ids: bool = False) -> tuple[np.ndarray, ...]:
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
        return_ids: also return the (H, W) int16 index of the primitive each pixel shows
            (-1 for sky), which names objects in the picture.

    Returns:
        ``(rgb, depth)``: (H, W, 3) uint8 and (H, W) float32 metres (0 invalid); with
        ``return_ids``, ``(rgb, depth, ids)``.
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
        order, bounds = group_by_object(hid, len(objects))
        flat = flat[order]
        th = t.reshape(-1)[flat]
        dh = dirs.reshape(3, -1)[:, flat]
        p = np.asarray(cam.position, np.float32)[:, None] + th[None, :] * dh
        n = np.empty_like(p)
        albedo = np.empty((p.shape[1], 3), np.float32)
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
    return (rgb, depth, ids) if return_ids else (rgb, depth)
