"""``depthvlm predict``: metric depth (and an answer) for one image file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from . import add_pipeline_arguments, pipeline_config

HELP = "Predict metric depth for an image (and answer a question about it)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="RGB image file (jpg, png, ...)")
    p.add_argument("--fx", type=float, required=True, help="focal length in pixels (x)")
    p.add_argument("--fy", type=float, help="focal length in pixels (y); default fx")
    p.add_argument("--cx", type=float, help="principal point x; default (W-1)/2")
    p.add_argument("--cy", type=float, help="principal point y; default (H-1)/2")
    p.add_argument("--question", help="a spatial question about the image")
    p.add_argument("--out", required=True, help="output folder")
    add_pipeline_arguments(p)


def load_rgb(path: str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; a clear InputError if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from ..core.camera import Intrinsics
    from ..core.pipeline import DepthVLMPipeline
    from ..core.visualize import save_depth_outputs

    rgb = load_rgb(args.image)
    h, w = rgb.shape[:2]
    intr = Intrinsics(args.fx, args.fy if args.fy is not None else args.fx,
                      args.cx if args.cx is not None else (w - 1) / 2.0,
                      args.cy if args.cy is not None else (h - 1) / 2.0, w, h)
    pipe = DepthVLMPipeline.from_config(pipeline_config(args))
    pred = pipe.predict(rgb, intr, question=args.question)
    stem = Path(args.image).stem
    paths = save_depth_outputs(pred.depth, args.out, stem)
    valid = np.isfinite(pred.depth)
    summary = {
        "image": str(args.image), "size": [w, h],
        "model_input": [pred.frame.plan.model_width, pred.frame.plan.model_height],
        "tokens": pred.frame.plan.num_tokens, "depth_scale": pred.frame.plan.depth_scale,
        "resize_mode": pred.frame.plan.mode,
        "depth_min_m": float(np.min(pred.depth[valid])) if valid.any() else None,
        "depth_median_m": float(np.median(pred.depth[valid])) if valid.any() else None,
        "depth_max_m": float(np.max(pred.depth[valid])) if valid.any() else None,
        "valid_fraction": float(valid.mean()), "timings_s": pred.frame.timings,
        "question": args.question, "answer": pred.answer,
        "files": {k: str(v) for k, v in paths.items()},
    }
    (Path(args.out) / f"{stem}_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"depth: {w}x{h}, median {summary['depth_median_m']:.2f} m, "
          f"{pred.frame.timings['total'] * 1000:.0f} ms -> {paths['npy']}")
    if args.question is not None:
        print(f"question: {args.question}")
        print(f"answer: {pred.answer}")
    return 0
