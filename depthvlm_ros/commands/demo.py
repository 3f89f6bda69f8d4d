"""``depthvlm demo``: the whole system on the embedded model, no GPU, no download."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..core.config import DepthVLMConfig
from ..core.errors import DepthVLMError

HELP = ("Run the node on a played sample bag, record its outputs, ask spatial questions and "
        "print a summary.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="output folder (default runs/demo-<time>)")
    p.add_argument("--model", default=DepthVLMConfig.model_path,
                   help=f"model folder or 'embedded' (default {DepthVLMConfig.model_path})")
    p.add_argument("--frames", type=int, default=16, help="synthetic frames in the bag")
    p.add_argument("--rate", type=float, default=0.5, help="playback speed (bag is 10 Hz)")
    p.add_argument("--domain-id", type=int, default=0, help="ROS_DOMAIN_ID (0: pick one)")


def run(args: argparse.Namespace) -> int:
    from ..ros.demo import DemoOptions, answer_lines, run_demo

    out = Path(args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    t0 = time.monotonic()
    s = run_demo(DemoOptions(out=out, model_path=args.model, frames=args.frames,
                             rate=args.rate, domain_id=args.domain_id))
    print()
    print("=== depthvlm demo summary ===")
    print(f"frames played {s['frames_played']}, depth images published {s['depth_published']}, "
          f"point clouds {s['points_published']}, stamps in order: {s['stamps_in_order']}")
    d1, ar = s["delta1"], s["abs_rel"]
    print(f"accuracy vs the bag's GT ({s['frames_scored']} frames): "
          f"delta1 {d1 if d1 is None else round(d1, 3)}, AbsRel {ar if ar is None else round(ar, 3)}")
    print(f"model latency {s['model_latency_ms']} ms/frame (node diagnostics)")
    for a in s["answers"]:
        print("\n".join(answer_lines(a)))
    print(f"report: {out / 'report.md'}   recorded MCAP bag: {s['recorded_bag']}   "
          f"({time.monotonic() - t0:.0f} s)")
    checks = ((s["depth_published"] > 0, "no depth image was published"),
              (bool(s["answers"]), "no question was answered"),
              (s["stamps_in_order"], "depth stamps were out of order"))
    failures = [what for ok, what in checks if not ok]
    if failures:
        raise DepthVLMError(f"the demo did not run end to end: {'; '.join(failures)} "
                            f"(outputs in {out})")
    return 0
