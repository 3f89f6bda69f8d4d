"""``depthvlm predict``: metric depth (and an answer) for one image file."""

from __future__ import annotations

import argparse

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


def run(args: argparse.Namespace) -> int:
    from ..core.predict import PredictRequest, predict_image_file

    s = predict_image_file(PredictRequest(args.image, args.out, args.fx, args.fy, args.cx,
                                          args.cy, args.question, pipeline_config(args)))
    median = s["depth_median_m"]
    print(f"depth: {s['size'][0]}x{s['size'][1]}, median "
          f"{'n/a' if median is None else f'{median:.2f}'} m, "
          f"{s['timings_s']['total'] * 1000:.0f} ms -> {s['files']['npy']}")
    if args.question is not None:
        print(f"question: {args.question}")
        print(f"answer: {s['answer']}")
    return 0
