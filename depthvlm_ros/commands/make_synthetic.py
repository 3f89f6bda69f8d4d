"""``depthvlm make-synthetic``: write a synthetic DepthVLM-Bench folder (RGB, exact depth, QA).

Examples::

    depthvlm make-synthetic data/synth --indoor 500 --outdoor 500 --seed 0
    depthvlm make-synthetic data/synth_small --indoor 20 --outdoor 20 --width 320 --height 240 \\
        --workers 2
"""

from __future__ import annotations

import argparse

__all__ = ["HELP", "add_arguments", "run"]

HELP = ("Generate synthetic indoor/outdoor RGB + exact z-depth scenes with spatial QA as "
        "DepthVLM-Bench JSONL.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options on ``p``."""
    p.add_argument("out", metavar="OUT", help="output folder (rgb/, depth/, *.jsonl, meta.json)")
    p.add_argument("--indoor", type=int, default=100, metavar="N",
                   help="number of indoor images (default 100)")
    p.add_argument("--outdoor", type=int, default=100, metavar="N",
                   help="number of outdoor images (default 100)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--width", type=int, default=None,
                   help="fixed image width (default: random per image, 256-1024)")
    p.add_argument("--height", type=int, default=None,
                   help="fixed image height (default: 4:3 or 16:9 of the width)")
    p.add_argument("--fx", type=float, default=None,
                   help="fixed focal length in pixels (default: random, 300-1500)")
    p.add_argument("--format", choices=("png", "jpg"), default="png", dest="image_format",
                   help="colour image format (default png)")
    p.add_argument("--points", type=int, default=10, metavar="K",
                   help="sample points on each dense-depth line (default 10)")
    p.add_argument("--qa", type=int, default=4, metavar="K",
                   help="spatial question lines about the depth map per image (default 4)")
    p.add_argument("--world", default=None,
                   help="layout rules: v2 (default; real-world sizes), mount (v2 seen from one "
                        "robot's fixed camera mount), robot (mount through that robot's one "
                        "camera) or v1 (reproduces generator 1.0 files)")
    p.add_argument("--no-scene-qa", action="store_true",
                   help="leave out the scene-kind question and the named-object questions "
                        "(with their object boxes) that each image otherwise gets")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes (default 1; the output does not depend on it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the folder and print a summary with the measured frames per second."""
    from ..core.bench.synthetic import benchmark_summary, write_benchmark

    world = {} if args.world is None else {"world": args.world}
    meta = write_benchmark(args.out, args.indoor, args.outdoor, args.seed, width=args.width,
                           height=args.height, fx=args.fx, image_format=args.image_format,
                           points_per_image=args.points, qa_per_image=args.qa,
                           workers=args.workers, progress=not args.no_progress,
                           scene_qa=not args.no_scene_qa, **world)
    print(benchmark_summary(meta, args.out))
    return 0
