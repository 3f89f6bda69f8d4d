#!/usr/bin/env python3
"""Score a model folder with the training evaluation, on any split.

The training loop scores its held-out split every ``--eval-every`` steps (dense δ1, AbsRel,
the scale/shape split, answers from the model's own text, pointing). This script gives the
same figures for a saved model on any JSONL, e.g. on images it was trained on, which tells
whether a shortfall is a generalisation gap (more images help) or a fitting one (more steps
or capacity help)::

    python scripts/training_eval.py --model depthvlm_ros/embedded \\
        --data runs/embedded/data/train/synthetic.jsonl --images 60 --out runs/fit-train.json

The questions (point and marker pixels) are drawn with the training evaluation's fixed seed,
so two models scored on one split answer the same questions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model folder (or 'embedded')")
    ap.add_argument("--data", required=True, action="append", help="JSONL split(s)")
    ap.add_argument("--images", type=int, default=60,
                    help="images per file, spread evenly over its datasets (0: all)")
    ap.add_argument("--max-tokens", type=int,
                    help="image token budget (default: the one the model was trained with)")
    ap.add_argument("--markers", type=int, default=2, help="marker questions per image")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", help="write the full result as JSON here")
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from depthvlm_ros.core.bench.jsonl import read_jsonl
    from depthvlm_ros.core.errors import DepthVLMError
    from depthvlm_ros.core.folders import folder_canonical_fx, read_meta, resolve_model_path
    from depthvlm_ros.core.model import load_depthvlm
    from depthvlm_ros.core.train.evaluate import eval_subset, evaluate_model

    torch.set_num_threads(args.threads)
    try:
        folder = resolve_model_path(args.model)
        model = load_depthvlm(folder)
        records = [r for path in args.data for r in eval_subset(read_jsonl(path), args.images)]
    except (DepthVLMError, OSError, ValueError) as exc:
        print(f"training_eval: {exc}", file=sys.stderr)
        return 1
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    # Our folders record the budget they were trained with; other folders get the evaluation's.
    max_tokens = args.max_tokens or read_meta(folder).get("max_image_tokens")
    budget = {"max_tokens": int(max_tokens)} if max_tokens else {}
    result = evaluate_model(model, tokenizer, records, folder_canonical_fx(folder),
                            markers_per_image=args.markers, **budget)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    for group, d in result["depth"].items():
        print(f"{group}: δ1 {d['delta1']:.3f}  AbsRel {d['abs_rel']:.3f}  "
              f"scale-aligned δ1 {d.get('delta1_scale_aligned', float('nan')):.3f}  "
              f"scale error p50 {d.get('scale_factor_p50', float('nan')):.2f}x  "
              f"({d['n_images']} images)")
    for kind, groups in sorted(result["answers"].items()):
        cells = "  ".join(f"{g} {v['accuracy']:.0%} of {v['n']}" for g, v in groups.items())
        print(f"{kind}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
