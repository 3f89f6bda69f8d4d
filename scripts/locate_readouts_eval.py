#!/usr/bin/env python3
"""Score how well a checkpoint locates named objects, step by step.

Pointing goes through three steps: the image states must carry where each token is, a
grounding reply must select the named object's tokens, and it must fetch their position. This
measures each apart on the grounding question of every named object of a split (no flips, no
jitter)::

    python scripts/locate_readouts_eval.py --checkpoint runs/locate/checkpoints/step-0000300 \\
        --data runs/embedded/data/heldout/synthetic.jsonl --objects 60

For any checkpoint or model folder it prints the selection figures of head 0 of LLM layer
``--select-layer`` (the head ``--select-weight`` trains): the mean attention mass that the
reply's positions put on the object's image tokens (``select_mass``), the same mass if the
head attended uniformly to everything before it (``select_mass_uniform``, the chance level),
and how often the image token it attends to most lies inside the box (``select_top_inside``).

For a checkpoint trained with ``--locate-weight`` it adds the readouts' figures: the token
readout's mean squared error (image fractions; always answering the image centre scores
1/12 = 0.083), the reply readout's error at the position before the reply against always
answering the split's mean object centre, the correlation of the reply readout with the true
centre (x and y), and how often that readout's centre lies inside the object's box (the
pointing criterion).
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
    ap.add_argument("--select-layer", type=int, default=-3,
                    help="LLM layer whose head 0 is scored for selection (negative: from the last)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from depthvlm_ros.core.bench.spatial_qa import pointing_hit
    from depthvlm_ros.core.train.locate import (LocateReadouts, box_attention_mass, box_tokens,
                                                check_llm_layer, grounding_passes,
                                                head_attention, load_for_grounding,
                                                load_training_module, named_objects,
                                                reply_positions, token_readout_error)

    torch.set_num_threads(args.threads)
    model, tok, builder = load_for_grounding(args.checkpoint)
    try:
        check_llm_layer(model, args.select_layer)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    readouts = LocateReadouts(model.config.text_config.hidden_size)
    if not load_training_module(readouts, args.checkpoint):
        readouts = None
        print(f"{args.checkpoint} has no position readouts (train with --locate-weight); "
              "scoring selection only", file=sys.stderr)
    token_err, read, truth, inside = [], [], [], []
    mass, uniform, top_inside = [], [], []
    with torch.no_grad():  # scoring only
        for record, sample, batch, enc, tap in grounding_passes(
                model, tok, builder, named_objects(args.data, args.objects), args.select_layer):
            box = batch["locate_box"]
            image_mask = batch["input_ids"] == model.config.image_token_id
            probs = head_attention(tap)
            replying = reply_positions(batch["labels"], box)[0]
            mass.append(float(box_attention_mass(probs, image_mask, enc.grid_hw, box)[0, replying]
                              .mean()))
            in_box = box_tokens(box, *enc.grid_hw)[0].reshape(-1)
            # Chance level: the box's tokens' share of everything each reply position can see.
            uniform.append(float((in_box.sum() / (replying.nonzero()[:, 0] + 1).float()).mean()))
            first = int(replying.nonzero()[0])
            top = int(probs[0, first, image_mask[0]].argmax())
            top_inside.append(bool(in_box[top]))
            truth.append(np.asarray(sample.locate_box).reshape(2, 2).mean(0))
            if readouts is None:
                continue
            token_err.append(float(token_readout_error(readouts, enc.image_hidden)))
            xy = readouts.reply_xy(enc.hidden[0, first]).numpy()
            read.append(xy)
            # The benchmark's pointing rule, on the readout's centre as a pixel-centre point.
            w, h = sample.info["window"][2:]
            inside.append(pointing_hit([(xy[0] * w - 0.5, xy[1] * h - 0.5)],
                                       record.extra["object_box"]))
    if not truth:
        print("no named objects in the data", file=sys.stderr)
        return 2
    report = {"objects": len(truth), "select_layer": args.select_layer,
              "select_mass": round(float(np.mean(mass)), 4),
              "select_mass_uniform": round(float(np.mean(uniform)), 4),
              "select_top_inside": round(float(np.mean(top_inside)), 3)}
    if readouts is not None:
        read, truth = np.array(read), np.array(truth)
        with np.errstate(invalid="ignore", divide="ignore"):  # one box everywhere: NaN, said so
            corr = [float(np.corrcoef(read[:, i], truth[:, i])[0, 1]) if len(truth) > 2
                    else float("nan") for i in (0, 1)]
        report.update({
            "token_mse": round(float(np.mean(token_err)), 4),
            "reply_mse": round(float(((read - truth) ** 2).mean()), 4),
            "reply_mse_mean_centre": round(float(((truth - truth.mean(0)) ** 2).mean()), 4),
            "reply_corr_x": round(corr[0], 2), "reply_corr_y": round(corr[1], 2),
            "reply_inside_box": round(float(np.mean(inside)), 3)})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
