#!/usr/bin/env python3
"""Average the weights of model folders of one architecture into a new model folder.

The end points of training phases that each restart and decay the learning rate are
snapshots of one run; averaging them (stochastic weight averaging) often lands nearer the
middle of a wide minimum than any one of them. The README measures it on the embedded model::

    python scripts/average_models.py --out runs/embedded/average67 \\
        runs/embedded/phase6/best runs/embedded/phase7/best
    python scripts/training_eval.py --model runs/embedded/average67 \\
        --data runs/embedded/data/heldout/synthetic.jsonl --images 0

The folders must have the same config (same weight names and shapes); the first one gives the
tokenizer, the preprocessing settings and the meta (with ``averaged_from`` added and its
evaluation figures dropped: they were the first folder's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="model folders to average (two or more)")
    ap.add_argument("--out", required=True, help="folder to write the averaged model to")
    args = ap.parse_args(argv)
    if len(args.folders) < 2:
        ap.error("give two or more folders")

    import torch
    from transformers import AutoTokenizer

    from depthvlm_ros.core.errors import DepthVLMError
    from depthvlm_ros.core.folders import (read_meta, read_preprocessor, resolve_model_path,
                                           write_model_folder)
    from depthvlm_ros.core.model import load_depthvlm

    try:
        folders = [resolve_model_path(f) for f in args.folders]
        # The writer's library version is not part of the architecture.
        configs = [{k: v for k, v in json.loads((f / "config.json").read_text()).items()
                    if k != "transformers_version"} for f in folders]
        for folder, config in zip(folders[1:], configs[1:]):
            if config != configs[0]:
                raise DepthVLMError(f"{folder} has another config than {folders[0]}")
        model = load_depthvlm(folders[0])
        total = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for folder in folders[1:]:
            # One more model in memory at a time, whatever the number of folders.
            for key, value in load_depthvlm(folder).state_dict().items():
                total[key] += value
        with torch.no_grad():
            for key, value in model.state_dict().items():
                value.copy_(total[key] / len(folders))
        tokenizer = AutoTokenizer.from_pretrained(str(folders[0]), local_files_only=True)
        meta = {k: v for k, v in read_meta(folders[0]).items()
                if k not in ("metrics", "metrics_detail", "parameters", "format")}
        meta["averaged_from"] = [str(f) for f in folders]
        out = write_model_folder(model, tokenizer, args.out, meta=meta,
                                 preprocessor=read_preprocessor(folders[0]))
    except (DepthVLMError, OSError, ValueError) as exc:
        print(f"average_models: {exc}", file=sys.stderr)
        return 1
    print(f"average_models: {len(folders)} models -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
