#!/usr/bin/env python3
"""Where a model's depth has the wrong shape: its errors after each image's scale is fixed.

The training evaluation's scale-aligned δ1 says how much of a depth map is wrong once the
global scale is right, not where. This script divides each prediction by its own median scale
(:func:`~depthvlm_ros.core.train.evaluate.scale_diagnostics`, the evaluation's rule) and
counts the pixels still off by more than 1.25x ("bad"), split two ways:

* near a depth edge (within ``--edge-px`` pixels of a GT log-depth step of more than
  ``--edge-step`` per pixel: object and wall outlines) or away from one (inside surfaces);
* by image band (top, middle and bottom third of the rows).

Blurred outlines put the bad pixels near edges, and a sharper head or a gradient loss would
help; bad pixels inside whole surfaces mean the model does not know what the surface is.
The figure draws, for a few frames, the RGB, the GT, the scale-aligned prediction on the GT's
colours and the bad pixels (white) with the edge band outlined in red::

    python scripts/shape_errors.py --model embedded \\
        --data runs/embedded/data/heldout/synthetic.jsonl --out docs/figures/embedded_shape_errors.png
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

BANDS = ("top", "middle", "bottom")


def edge_band(gt: np.ndarray, step: float, px: int) -> np.ndarray:
    """Pixels within ``px`` of a GT log-depth change of more than ``step`` per pixel."""
    valid = gt > 0
    log = np.log(np.where(valid, gt, 1.0))
    gy, gx = np.gradient(log)
    edge = (np.hypot(gx, gy) > step) & valid
    # Grown by ``px`` in every direction: a box sum over an integral image.
    k = 2 * px + 1
    c = np.pad(np.pad(edge.astype(np.int64), px).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = edge.shape
    return (c[k:k + h, k:k + w] - c[:h, k:k + w] - c[k:k + h, :w] + c[:h, :w]) > 0


def bad_pixels(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(bad, valid, scale)``: pixels off by > 1.25x after the image's own median scale."""
    from depthvlm_ros.core.train.evaluate import scale_diagnostics

    valid = (gt > 0) & np.isfinite(gt) & (pred > 0) & np.isfinite(pred)
    scale, _, _ = scale_diagnostics(pred, gt)
    if not np.isfinite(scale):
        return np.zeros_like(valid), valid, scale
    aligned = np.where(valid, pred / scale, 1.0)
    g = np.where(valid, gt, 1.0)
    bad = (np.maximum(aligned / g, g / aligned) > 1.25) & valid
    return bad, valid, scale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="embedded", help="model folder (or 'embedded')")
    ap.add_argument("--data", required=True, action="append", help="JSONL split(s)")
    ap.add_argument("--images", type=int, default=60,
                    help="images per file, spread evenly over its datasets (0: all)")
    ap.add_argument("--edge-step", type=float, default=0.05,
                    help="GT log-depth change per pixel that makes an edge")
    ap.add_argument("--edge-px", type=int, default=8, help="width of the band around edges")
    ap.add_argument("--frames", type=int, default=4, help="frames drawn (spread over the set)")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--json", help="write the counts as JSON here")
    args = ap.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from depthvlm_ros.core.bench.jsonl import load_gt_depth, load_rgb, read_jsonl
    from depthvlm_ros.core.bench.metrics import resize_nearest
    from depthvlm_ros.core.config import DepthVLMConfig
    from depthvlm_ros.core.errors import DepthVLMError
    from depthvlm_ros.core.frames import record_intrinsics
    from depthvlm_ros.core.pipeline import DepthVLMPipeline
    from depthvlm_ros.core.train.evaluate import eval_subset
    from depthvlm_ros.core.visualize import colorize_depth

    try:
        pipe = DepthVLMPipeline.from_config(DepthVLMConfig(
            model_path=args.model, device="cpu", head_backend="torch", max_depth=1000.0))
        records = [r for path in args.data for r in eval_subset(read_jsonl(path), args.images)]
    except (DepthVLMError, OSError, ValueError) as exc:
        print(f"shape_errors: {exc}", file=sys.stderr)
        return 1
    images = list({str(r.image): r for r in records}.values())
    drawn = set(np.linspace(0, len(images) - 1, min(args.frames, len(images))).astype(int))
    counts = {"valid": 0, "bad": 0, "edge": 0, "edge_bad": 0,
              **{f"{b}_{k}": 0 for b in BANDS for k in ("valid", "bad")}}
    panels = []
    for i, rec in enumerate(images):
        rgb = load_rgb(rec)
        h, w = rgb.shape[:2]
        gt = load_gt_depth(rec)
        if gt.shape != (h, w):
            gt = resize_nearest(gt, (w, h))
        pred = np.nan_to_num(pipe.process_frame(rgb, record_intrinsics(rec, w, h)).depth,
                             nan=0.0)
        bad, valid, scale = bad_pixels(pred, gt)
        band = edge_band(gt, args.edge_step, args.edge_px) & valid
        counts["valid"] += int(valid.sum())
        counts["bad"] += int(bad.sum())
        counts["edge"] += int(band.sum())
        counts["edge_bad"] += int((bad & band).sum())
        for b, rows in zip(BANDS, np.array_split(np.arange(h), 3)):
            counts[f"{b}_valid"] += int(valid[rows].sum())
            counts[f"{b}_bad"] += int(bad[rows].sum())
        if i in drawn:
            panels.append((rec, rgb, gt, pred / scale if np.isfinite(scale) else pred, bad,
                           band, float(bad.sum() / max(1, valid.sum()))))

    def share(num: int, den: int) -> float:
        return num / den if den else float("nan")

    summary = {
        "images": len(images),
        "bad": share(counts["bad"], counts["valid"]),
        "edge_share_of_pixels": share(counts["edge"], counts["valid"]),
        "bad_near_edges": share(counts["edge_bad"], counts["edge"]),
        "bad_away_from_edges": share(counts["bad"] - counts["edge_bad"],
                                     counts["valid"] - counts["edge"]),
        "share_of_bad_near_edges": share(counts["edge_bad"], counts["bad"]),
        **{f"bad_{b}": share(counts[f"{b}_bad"], counts[f"{b}_valid"]) for b in BANDS},
        **{f"share_of_bad_{b}": share(counts[f"{b}_bad"], counts["bad"]) for b in BANDS},
    }
    print(f"{len(images)} images: {summary['bad']:.1%} of pixels bad after scale alignment")
    print(f"  near edges ({summary['edge_share_of_pixels']:.0%} of pixels): "
          f"{summary['bad_near_edges']:.1%} bad, {summary['share_of_bad_near_edges']:.0%} "
          f"of all bad pixels; away from edges {summary['bad_away_from_edges']:.1%} bad")
    print("  by band: " + ", ".join(
        f"{b} {summary[f'bad_{b}']:.1%} bad ({summary[f'share_of_bad_{b}']:.0%} of bad)"
        for b in BANDS))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "counts": counts, "model": args.model}, fh, indent=2)

    fig, axes = plt.subplots(len(panels), 4, figsize=(14, 2.9 * len(panels)), squeeze=False)
    for row, (rec, rgb, gt, aligned, bad, band, frac) in zip(axes, panels):
        valid = gt[gt > 0]
        lo, hi = np.percentile(valid, [2, 98]) if valid.size else (0.0, 1.0)
        row[0].imshow(rgb)
        row[1].imshow(colorize_depth(gt, lo, hi))
        row[2].imshow(colorize_depth(aligned, lo, hi))
        row[3].imshow(bad, cmap="gray", vmin=0, vmax=1)
        row[3].contour(band, levels=[0.5], colors="red", linewidths=0.5)
        row[0].set_title(f"{rec.dataset}: {rec.image.name}", fontsize=9)
        row[1].set_title(f"ground truth ({lo:.1f}-{hi:.1f} m)", fontsize=9)
        row[2].set_title("prediction / its median scale, same colours", fontsize=9)
        row[3].set_title(f"off by > 1.25x: {frac:.0%} (red: edge band)", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"model {args.model}: {summary['bad']:.0%} of pixels wrong after scale "
                 f"alignment, {summary['share_of_bad_near_edges']:.0%} of them near depth "
                 "edges", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=70)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
