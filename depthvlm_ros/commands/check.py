"""``depthvlm check``: validate a model folder in seconds, without loading its weights."""

from __future__ import annotations

import argparse

__all__ = ["HELP", "add_arguments", "run"]

HELP = "Validate a model folder (config, weights, shards, tokenizer, processor, memory) without loading it."


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..core.config import field_specs

    specs = {s.name: s for s in field_specs()}
    p.add_argument("model", help="model folder or 'embedded'")
    p.add_argument("--device", default="auto",
                   help="device the memory verdict is for: auto, cpu, cuda, cuda:N, or none "
                        "(estimate only) (default auto)")
    p.add_argument("--dtype", default="auto", choices=specs["dtype"].choices,
                   help="dtype the model will be loaded in (default auto: bfloat16 on GPU, "
                        "float32 on CPU)")
    p.add_argument("--image-tokens", type=int, default=None,
                   help="image tokens per frame for the memory estimate (default 1200: a "
                        "640x480 camera with fx 500)")
    p.add_argument("--frame-history", type=int, default=specs["frame_history"].default,
                   help="held frames for the KV-cache estimate "
                        f"(default {specs['frame_history'].default})")


def run(args: argparse.Namespace) -> int:
    from ..core.check import validate_model_folder

    report = validate_model_folder(args.model, dtype=args.dtype, device=args.device,
                                   image_tokens=args.image_tokens,
                                   frame_history=args.frame_history)
    print(report.format())
    return 0 if report.ok else 1
