"""Depth colourisation and depth file writers shared by the CLI, the node and the reports."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["colorize_depth", "save_depth_png_mm", "save_depth_outputs"]


@lru_cache(maxsize=1)
def _turbo_lut() -> np.ndarray:
    # matplotlib is only needed for its colormap table; read it once.
    from matplotlib import colormaps

    return (colormaps["turbo"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def colorize_depth(depth: np.ndarray, vmin: float | None = None,
                   vmax: float | None = None) -> np.ndarray:
    """Turbo-coloured (H, W, 3) uint8 preview; near is red, far is blue, invalid is black.

    The range defaults to the 2nd-98th percentile of valid depths, so a few outliers do not
    flatten the picture.
    """
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape + (3,), dtype=np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(d[valid], [2.0, 98.0]) if vmin is None or vmax is None else (vmin, vmax)
    lo = float(vmin if vmin is not None else lo)
    hi = float(vmax if vmax is not None else hi)
    hi = max(hi, lo + 1e-6)
    t = np.clip((d[valid] - lo) / (hi - lo), 0.0, 1.0)
    out[valid] = _turbo_lut()[(255 - np.round(t * 255)).astype(np.uint8)]
    return out


def save_depth_png_mm(depth: np.ndarray, path: str | Path) -> None:
    """16-bit PNG in millimetres (0 = invalid), the usual depth-camera file format."""
    d = np.asarray(depth, dtype=np.float64)
    mm = np.where(np.isfinite(d) & (d > 0), np.round(d * 1000.0), 0.0)
    Image.fromarray(np.clip(mm, 0, 65535).astype(np.uint16)).save(path)


def save_depth_outputs(depth: np.ndarray, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.npy`` (metres, NaN invalid), ``<stem>_mm.png`` and ``<stem>_color.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"npy": out / f"{stem}.npy", "png_mm": out / f"{stem}_mm.png",
             "color": out / f"{stem}_color.png"}
    np.save(paths["npy"], depth.astype(np.float32))
    save_depth_png_mm(depth, paths["png_mm"])
    Image.fromarray(colorize_depth(depth)).save(paths["color"])
    return paths
