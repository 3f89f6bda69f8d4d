#!/usr/bin/env python3
"""What a model answers on one synthetic frame: a markdown table for the README.

Renders a 320x240 synthetic frame (the first seed from ``--seed`` on whose frame the generator
names an object), runs it through the node's pipeline once and asks the README's questions
on that one frame with ``answer_mode`` auto, as the node does: the final text, its source
and the model's own text, plus the ground truth the generator knows for each question.

    python scripts/answer_examples.py --model embedded [--kind indoor] [--seed 7001]
"""

from __future__ import annotations

import argparse

import numpy as np

from depthvlm_ros.core.answers import SOURCE_MEASURED, SOURCE_MODEL, answer_question
from depthvlm_ros.core.bench.synthetic import (EMBEDDED_WORLD, WORLDS, render_scene,
                                              visible_objects)
from depthvlm_ros.core.bench.synthetic.objects import OBJECT_QUESTION, SCENE_QUESTION
from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.spatial import Region


_SOURCE = {SOURCE_MEASURED: "measured", SOURCE_MODEL: "model"}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--kind", default="indoor", choices=("indoor", "outdoor"))
    p.add_argument("--seed", type=int, default=7001)
    p.add_argument("--world", default=EMBEDDED_WORLD, choices=tuple(WORLDS))
    args = p.parse_args(argv)

    seed = args.seed
    while True:
        sc = render_scene(seed, args.kind, width=320, height=240, world=args.world)
        named = visible_objects(sc.rgb, sc.depth, sc.object_ids, sc.objects)
        if named:
            break
        seed += 1
    obj = named[0]
    gt = np.where(sc.depth > 0, sc.depth, np.nan)
    intr = Intrinsics(sc.fx, sc.fy, sc.cx, sc.cy, sc.width, sc.height)
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=args.model, device="cpu",
                                                       head_backend="torch"))
    frame = pipe.process_frame(sc.rgb, intr, keep_context=True)
    region = Region(100, 120, 120, 100)
    asks = [
        ("How far is the point at pixel (u=160, v=120) from the camera?", (),
         f"{gt[120, 160]:.2f} m"),
        ("Which is nearer, (u=60, v=200) or (u=260, v=60)?", (),
         f"{gt[200, 60]:.2f} m vs {gt[60, 260]:.2f} m"),
        ("Is anything closer than 1.5 m in this region?", (region,),
         f"nearest {np.nanmin(gt[120:220, 100:220]):.2f} m"),
        (OBJECT_QUESTION.format(label=obj.label), (), f"{obj.depth:.2f} m, box {list(obj.box)}"),
        (SCENE_QUESTION, (), "indoors" if args.kind == "indoor" else "outdoors"),
    ]
    print(f"frame: render_scene({seed}, {args.kind!r}, width=320, height=240, "
          f"world={args.world!r}); model {args.model}\n")
    print("| question | final text (`source`) | `model_answer` | truth |")
    print("|---|---|---|---|")
    for question, regions, truth in asks:
        res = answer_question(pipe, frame.context, frame.depth, intr, question, regions=regions)
        shown = question + (" (region 100, 120, 120×100)" if regions else "")
        located = ""
        if res.located:
            located = f" [located {res.located[0].label or 'unlabelled'} at " \
                      f"({res.located[0].point[0]:.0f}, {res.located[0].point[1]:.0f})]"
        print(f"| {_cell(shown)} | {_cell(res.answer)} (`{_SOURCE.get(res.source, 'none')}`){located} | "
              f"{_cell(res.model_answer)} | {_cell(truth)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
