"""``depthvlm predict`` as one call: an image file in, depth files and a summary out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import DepthVLMConfig
from .errors import InputError
from .frames import intrinsics_from_focal

__all__ = ["load_rgb_file", "PredictRequest", "predict_image_file"]


def load_rgb_file(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    Raises:
        InputError: the file cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


@dataclass
class PredictRequest:
    """One image to predict.

    Attributes:
        image: the RGB image file.
        out: output folder (``<stem>.npy``, ``<stem>_depth_mm.png``, ``<stem>_depth.png``,
            ``<stem>_summary.json``).
        fx, fy, cx, cy: intrinsics (see :func:`~depthvlm_ros.core.frames.intrinsics_from_focal`).
        question: an optional spatial question about the image.
        config: the pipeline's configuration.
    """

    image: str
    out: str
    fx: float
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    question: str | None = None
    config: DepthVLMConfig = field(default_factory=DepthVLMConfig)


def predict_image_file(request: PredictRequest) -> dict[str, Any]:
    """Predict metric depth (and answer the question) for one image file; write the outputs.

    Returns:
        The summary written to ``<stem>_summary.json``: sizes, the model's input grid, depth
        statistics, timings, the question and answer, and the written files.

    Raises:
        InputError: unreadable image or bad intrinsics; ModelLoadError / ConfigError from the
            pipeline.
    """
    from .pipeline import DepthVLMPipeline
    from .visualize import save_depth_outputs

    rgb = load_rgb_file(request.image)
    h, w = rgb.shape[:2]
    intr = intrinsics_from_focal(w, h, request.fx, request.fy, request.cx, request.cy)
    pipe = DepthVLMPipeline.from_config(request.config)
    pred = pipe.predict(rgb, intr, question=request.question)
    stem = Path(request.image).stem
    paths = save_depth_outputs(pred.depth, request.out, stem)
    valid = np.isfinite(pred.depth)
    plan = pred.frame.plan
    summary = {
        "image": str(request.image), "size": [w, h],
        "model_input": [plan.model_width, plan.model_height],
        "tokens": plan.num_tokens, "depth_scale": plan.depth_scale, "resize_mode": plan.mode,
        "depth_min_m": float(np.min(pred.depth[valid])) if valid.any() else None,
        "depth_median_m": float(np.median(pred.depth[valid])) if valid.any() else None,
        "depth_max_m": float(np.max(pred.depth[valid])) if valid.any() else None,
        "valid_fraction": float(valid.mean()), "timings_s": pred.frame.timings,
        "question": request.question, "answer": pred.answer,
        "files": {k: str(v) for k, v in paths.items()},
    }
    (Path(request.out) / f"{stem}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
