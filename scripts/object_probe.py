#!/usr/bin/env python3
"""Can a layer of the language model tell named objects apart? Linear probes say.

To point at "the red box" the model must select that object's image tokens by what the words
name. That needs two things in the states of the layer that selects: the object's image
tokens must carry its colour and kind, and the reply must carry which colour and kind were
asked for. This fits a linear probe (logistic regression) for each, on the named objects of
one split, and scores it on another::

    python scripts/object_probe.py --model embedded \\
        --fit runs/embedded/data/train/synthetic.jsonl \\
        --test runs/embedded/data/more/synthetic.jsonl --objects 300 --layer -3

Labels come from each object's name: its first word is the colour, its last the kind ("red
box": red, box). Image tokens are those inside the object's box (see ``box_tokens``); the
reply state is the one at the position before the grounding reply's first token. Each
accuracy is printed with the accuracy of always answering the commonest label of the fit
split. The states are those that enter the layer's self-attention, i.e. what its heads can
match queries against.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="model folder or 'embedded'")
    ap.add_argument("--fit", required=True, action="append", help="JSONL split(s) to fit on")
    ap.add_argument("--test", required=True, action="append", help="JSONL split(s) to score")
    ap.add_argument("--objects", type=int, default=300, help="named objects per side (0: all)")
    ap.add_argument("--layer", type=int, default=-3, help="LLM layer (negative: from the last)")
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps per probe")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)

    import torch

    from depthvlm_ros.core.train.locate import (box_tokens, check_llm_layer, grounding_passes,
                                                load_for_grounding, named_objects,
                                                reply_positions)

    torch.set_num_threads(args.threads)
    model, tok, builder = load_for_grounding(args.model)
    try:
        check_llm_layer(model, args.layer, "--layer")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2

    def states(paths: list[str]):
        """Per object: (its image tokens' states, the reply state, colour, kind)."""
        out = []
        for record, _, batch, enc, tap in grounding_passes(
                model, tok, builder, named_objects(paths, args.objects), args.layer):
            x = tap.hidden_states[0].float()
            image = batch["input_ids"][0] == model.config.image_token_id
            inside = box_tokens(batch["locate_box"], *enc.grid_hw)[0].reshape(-1)
            first = int(reply_positions(batch["labels"], batch["locate_box"])[0].nonzero()[0])
            words = record.extra["object_label"].split()
            out.append((x[image][inside], x[first], words[0], words[-1]))
        return out

    fit, test = states(args.fit), states(args.test)
    if not fit or not test:
        print("no named objects in the data", file=sys.stderr)
        return 2

    def probe(xs_fit, ys_fit, xs_test, ys_test) -> dict:
        classes = sorted(set(ys_fit))
        index = {c: i for i, c in enumerate(classes)}
        keep = [i for i, y in enumerate(ys_test) if y in index]  # labels the fit split has
        x_fit, x_test = torch.stack(xs_fit), torch.stack([xs_test[i] for i in keep])
        y_fit = torch.tensor([index[y] for y in ys_fit])
        y_test = torch.tensor([index[ys_test[i]] for i in keep])
        mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
        torch.manual_seed(0)
        linear = torch.nn.Linear(x_fit.shape[1], len(classes))
        opt = torch.optim.Adam(linear.parameters(), lr=0.05, weight_decay=1e-3)
        for _ in range(args.steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(linear((x_fit - mean) / std), y_fit).backward()
            opt.step()
        with torch.no_grad():
            acc = float((linear((x_test - mean) / std).argmax(1) == y_test).float().mean())
        commonest = int(torch.bincount(y_fit).argmax())
        return {"accuracy": round(acc, 3),
                "commonest_label": round(float((y_test == commonest).float().mean()), 3),
                "classes": len(classes), "n_fit": len(y_fit), "n_test": len(y_test)}

    report = {"layer": args.layer, "objects_fit": len(fit), "objects_test": len(test)}
    for name, col in (("colour", 2), ("kind", 3)):
        # Image side: every token inside the box, labelled with its object's colour or kind.
        xs_fit = [t for o in fit for t in o[0]]
        ys_fit = [o[col] for o in fit for _ in range(len(o[0]))]
        xs_test = [t for o in test for t in o[0]]
        ys_test = [o[col] for o in test for _ in range(len(o[0]))]
        report[f"image_tokens_{name}"] = probe(xs_fit, ys_fit, xs_test, ys_test)
        report[f"reply_{name}"] = probe([o[1] for o in fit], [o[col] for o in fit],
                                        [o[1] for o in test], [o[col] for o in test])
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
