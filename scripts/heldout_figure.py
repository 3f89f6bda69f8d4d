#!/usr/bin/env python3
"""RGB / ground truth / prediction for a few held-out frames, with what the model says.

For each frame: the image (the named object's true box in green, the box the model locates
for it in magenta), the GT depth and the predicted depth on the GT's colour range (so a
wrong global scale shows as a shifted colour, not hidden by a per-image stretch), the frame's
δ1 and per-image scale factor (median prediction / GT), and the model's answers to the
scene-kind and named-object questions. Frames are the first ``--per-set`` of each JSONL file
that name an object (or the first ones when none does).

    python scripts/heldout_figure.py --model embedded \\
        --data runs/embedded/data/heldout/synthetic_indoor.jsonl \\
        --data runs/embedded/data/heldout/synthetic_outdoor.jsonl --out docs/figures/embedded_heldout.png
"""

from __future__ import annotations

import argparse
import textwrap

import numpy as np

from depthvlm_ros.core.answers import answer_question
from depthvlm_ros.core.bench.jsonl import load_gt_depth, load_rgb, read_jsonl
from depthvlm_ros.core.bench.metrics import image_metrics, resize_nearest
from depthvlm_ros.core.bench.synthetic.objects import SCENE_QUESTION
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.frames import record_intrinsics
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.train.evaluate import scale_diagnostics
from depthvlm_ros.core.visualize import colorize_depth


def pick_frames(path: str, n: int) -> list[list]:
    """The lines of the first ``n`` images of a file that name an object (else the first)."""
    by_image: dict[str, list] = {}
    for rec in read_jsonl(path):
        by_image.setdefault(str(rec.image), []).append(rec)
    images = list(by_image.values())
    named = [recs for recs in images if any(r.qa_type == "object_distance" for r in recs)]
    return (named + [r for r in images if r not in named])[:n]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--data", action="append", required=True, help="held-out JSONL (repeat)")
    p.add_argument("--per-set", type=int, default=2, help="frames per JSONL file")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=args.model, device="cpu",
                                                       head_backend="torch", max_depth=1000.0))
    frames = [recs for path in args.data for recs in pick_frames(path, args.per_set)]
    fig, axes = plt.subplots(len(frames), 3, figsize=(12, 4.2 * len(frames)), squeeze=False)
    for row, recs in zip(axes, frames):
        rec = recs[0]
        rgb = load_rgb(rec)
        h, w = rgb.shape[:2]
        intr = record_intrinsics(rec, w, h)
        gt = load_gt_depth(rec)
        if gt.shape != (h, w):
            gt = resize_nearest(gt, (w, h))
        frame = pipe.process_frame(rgb, intr, keep_context=True)
        pred = np.nan_to_num(frame.depth, nan=0.0)
        metrics = image_metrics(pred, gt)
        scale, _, _ = scale_diagnostics(pred, gt)
        scene = pipe.answer(frame.context, SCENE_QUESTION).text.strip()
        lines = [f"{SCENE_QUESTION} -> {scene!r}"]
        row[0].imshow(rgb)
        obj = next((r for r in recs if r.qa_type == "object_distance"), None)
        if obj is not None:
            x1, y1, x2, y2 = obj.extra["object_box"]
            row[0].add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1 + 1, y2 - y1 + 1,
                                       fill=False, ec="lime", lw=2))
            res = answer_question(pipe, frame.context, frame.depth, intr, obj.prompt,
                                  mode="measured")
            for located in res.located[:1]:
                if located.region is not None:
                    r = located.region
                    row[0].add_patch(Rectangle((r.x_offset - 0.5, r.y_offset - 0.5), r.width,
                                               r.height, fill=False, ec="magenta", lw=2,
                                               ls="--"))
                else:
                    row[0].plot(*located.point, "m+", ms=14, mew=2)
            lines.append(f"{obj.prompt} (truth {obj.extra['answer']:.2f} m) -> model "
                         f"{res.model_answer.strip()!r}, measured {res.answer.strip()!r}")
        valid = gt[gt > 0]
        lo, hi = np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0)
        row[1].imshow(colorize_depth(gt, lo, hi))
        row[2].imshow(colorize_depth(pred, lo, hi))
        row[0].set_title(f"{rec.dataset}: {rec.image.name}", fontsize=9)
        row[1].set_title(f"ground truth ({lo:.1f}-{hi:.1f} m)", fontsize=9)
        row[2].set_title(f"prediction, same colours: δ1 {metrics.delta1:.2f}, "
                         f"scale x{scale:.2f}", fontsize=9)
        row[0].set_xlabel("\n".join(textwrap.fill(t, 75) for t in lines), fontsize=7)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"model {args.model}: green = the named object's true box, magenta = the box "
                 "the model locates", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({len(frames)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
