#!/usr/bin/env python3
"""Score the position readouts of a checkpoint trained with ``--locate-weight``.

Pointing goes through two steps: the image states must carry where each token is, and a
grounding reply must fetch the named object's position from them. The readouts that
``--locate-weight`` trains measure each step apart, on the grounding question of every named
object of a split (no flips, no jitter)::

    python scripts/locate_readouts_eval.py --checkpoint runs/locate/checkpoints/step-0000300 \\
        --data runs/embedded/data/heldout/synthetic.jsonl --objects 60

It prints the token readout's mean squared error (image fractions; always answering the image
centre scores 1/12 = 0.083), the reply readout's error at the position before the reply
against always answering the split's mean object centre, the correlation of the reply
readout with the true centre (x and y), and how often that readout's centre lies inside the
object's box (the pointing criterion).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True,
                    help="checkpoint folder with locate_readouts.safetensors")
    ap.add_argument("--data", required=True, action="append", help="JSONL split(s)")
    ap.add_argument("--objects", type=int, default=60, help="named objects to score (0: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from depthvlm_ros.core.bench.jsonl import read_jsonl
    from depthvlm_ros.core.bench.spatial_qa import pointing_hit
    from depthvlm_ros.core.camera import vision_patching
    from depthvlm_ros.core.config import DepthVLMConfig
    from depthvlm_ros.core.folders import folder_canonical_fx, read_meta
    from depthvlm_ros.core.model import load_depthvlm
    from depthvlm_ros.core.pipeline import DepthVLMPipeline
    from depthvlm_ros.core.train.data import AugmentConfig, SampleBuilder, TextMix, collate
    from depthvlm_ros.core.train.locate import (LocateReadouts, load_readouts,
                                                token_readout_error)

    torch.set_num_threads(args.threads)
    model = load_depthvlm(args.checkpoint).eval()
    tok = AutoTokenizer.from_pretrained(args.checkpoint, local_files_only=True)
    readouts = LocateReadouts(model.config.text_config.hidden_size)
    if not load_readouts(readouts, args.checkpoint):
        print(f"{args.checkpoint} has no position readouts (train with --locate-weight)",
              file=sys.stderr)
        return 2
    meta = read_meta(args.checkpoint)
    fx = folder_canonical_fx(args.checkpoint)
    pipe = DepthVLMPipeline(model, tok, DepthVLMConfig(
        canonical_fx=fx, max_image_tokens=int(meta.get("max_image_tokens", 256)), device="cpu",
        head_backend="torch"), model_canonical_fx=fx)
    patch, merge = vision_patching(model.config)
    # No image_objects map: each line's own object is the one asked about.
    builder = SampleBuilder(pipe.prompt_ids, tok, tok.convert_tokens_to_ids("<|im_end|>"), fx,
                            pipe.config.max_image_tokens, AugmentConfig(hflip=0, jitter=0, crop=0),
                            TextMix(), patch_size=patch, merge_size=merge)
    named = [r for p in args.data for r in read_jsonl(p)
             if r.extra.get("object_box") is not None
             and isinstance(r.extra.get("object_label"), str)]
    if args.objects:
        named = named[:args.objects]
    token_err, read, truth, inside = [], [], [], []
    with torch.no_grad():
        for record in named:
            sample = builder.build(record, np.random.default_rng(0), kind="ground",
                                   augment=False)
            if sample.locate_xy is None:
                continue
            batch = collate([sample], tok.pad_token_id)
            enc = model.encode(batch["input_ids"], batch["pixel_values"],
                               batch["image_grid_thw"])
            token_err.append(float(token_readout_error(readouts, enc.image_hidden)))
            before_reply = int((batch["labels"][0] != -100).nonzero()[0]) - 1
            xy = readouts.reply_xy(enc.hidden[0, before_reply]).numpy()
            read.append(xy)
            truth.append(np.asarray(sample.locate_xy))
            # The benchmark's pointing rule, on the readout's centre as a pixel-centre point.
            w, h = sample.info["window"][2:]
            inside.append(pointing_hit([(xy[0] * w - 0.5, xy[1] * h - 0.5)],
                                       record.extra["object_box"]))
    if not truth:
        print("no named objects in the data", file=sys.stderr)
        return 2
    read, truth = np.array(read), np.array(truth)
    with np.errstate(invalid="ignore", divide="ignore"):  # one box everywhere: NaN, said so
        corr = [float(np.corrcoef(read[:, i], truth[:, i])[0, 1]) if len(truth) > 2
                else float("nan") for i in (0, 1)]
    print(json.dumps({
        "objects": len(truth),
        "token_mse": round(float(np.mean(token_err)), 4),
        "reply_mse": round(float(((read - truth) ** 2).mean()), 4),
        "reply_mse_mean_centre": round(float(((truth - truth.mean(0)) ** 2).mean()), 4),
        "reply_corr_x": round(corr[0], 2), "reply_corr_y": round(corr[1], 2),
        "reply_inside_box": round(float(np.mean(inside)), 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
