"""``depthvlm make-sample-bag``: a rosbag2 bag of synthetic RGB-D frames to try replay on."""

from __future__ import annotations

import argparse

from . import add_bag_argument, add_bag_storage_argument

__all__ = ["HELP", "add_arguments", "run"]

HELP = ("Write a bag of synthetic indoor/outdoor frames (rgb8 image, camera_info, 32FC1 GT "
        "depth at 10 Hz) for trying replay and play.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_bag_argument(p, "out", help="output bag folder (must not exist)")
    p.add_argument("--frames", type=int, default=20, help="number of frames (default 20)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--rate", type=float, default=10.0, help="frame rate of the stamps (Hz)")
    p.add_argument("--seed", type=int, default=0, help="first scene seed")
    p.add_argument("--world", default=None,
                   help="synthetic world of the frames (default: the one the embedded model "
                        "was trained in; see make-synthetic --world)")
    add_bag_storage_argument(p)


def run(args: argparse.Namespace) -> int:
    from ..bags import SAMPLE_TOPICS, write_sample_bag

    world = {} if args.world is None else {"world": args.world}
    n = write_sample_bag(args.out, frames=args.frames, width=args.width, height=args.height,
                         storage=args.format, rate_hz=args.rate, seed=args.seed, **world)
    print(f"wrote {n} frames to {args.out} ({args.format}): image {SAMPLE_TOPICS['image']}, "
          f"camera_info {SAMPLE_TOPICS['camera_info']}, GT depth {SAMPLE_TOPICS['gt_depth']}")
    return 0
