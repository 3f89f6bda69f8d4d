"""``depthvlm train``: staged DepthVLM training on DepthVLM-Bench JSONL data.

Single process::

    depthvlm train --train data/train.jsonl --eval data/val.jsonl --out runs/x \\
        --stages 0:2000:1e-3,1:200:5e-4,2:600:2e-4

Data parallel (one process per GPU, or several Gloo processes on CPU)::

    torchrun --nproc_per_node 2 -m depthvlm_ros.cli train ... --strategy ddp

Stages: 0 = whole model (for models trained from scratch, e.g. the embedded one), 1 = depth
head only (VLM frozen, SILog), 2 = LLM + lm_head + head (vision frozen, LM + depth loss).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

__all__ = ["HELP", "add_arguments", "run", "config_from_args"]

HELP = "Train a DepthVLM model in stages (depth + text supervision; torchrun/DDP ready)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options on ``p``."""
    from ..core.train.loop import ARCHITECTURES

    g = p.add_argument_group("data")
    g.add_argument("--train", nargs="+", required=True, help="training JSONL file(s)")
    g.add_argument("--eval", nargs="*", default=[], help="held-out JSONL file(s)")
    g.add_argument("--out", required=True, help="run folder (checkpoints, log, plot, final)")
    g.add_argument("--canonical-fx", type=float, default=0.0,
                   help="canonical focal (pixels); 0 = the initial model's meta value, else 1000")
    g.add_argument("--max-image-tokens", type=int, default=256)
    g.add_argument("--hflip", type=float, default=0.5, help="horizontal flip probability")
    g.add_argument("--jitter", type=float, default=0.2, help="colour jitter strength")
    g.add_argument("--crop", type=float, default=0.0, help="probability of a random crop batch")
    g.add_argument("--text-mix", default="dense=1,point=1,marker=1,qa=1",
                   help="weights of text-target kinds, e.g. dense=1,point=2,marker=2,qa=1")
    g.add_argument("--gt-native", action="store_true",
                   help="compute the depth loss at the GT's own resolution (default: on the "
                        "model image's grid, nearest-resized GT)")
    g.add_argument("--facts", type=int, default=3, help="'at (u, v): d m' facts per dense reply")
    m = p.add_argument_group("model")
    m.add_argument("--init", default="scratch",
                   help="'scratch' (random, --arch) or a model folder / 'embedded' to fine-tune")
    m.add_argument("--arch", default="embedded", choices=sorted(ARCHITECTURES))
    m.add_argument("--vocab-size", type=int, default=512)
    o = p.add_argument_group("optimisation")
    o.add_argument("--stages", default="0:2000:1e-3,1:200:5e-4,2:600:2e-4",
                   help="comma-separated stage:steps:lr")
    o.add_argument("--batch-size", type=int, default=8, help="per rank, per micro-step")
    o.add_argument("--grad-accum", type=int, default=1)
    o.add_argument("--depth-weight", type=float, default=1.0)
    o.add_argument("--lm-weight", type=float, default=1.0)
    o.add_argument("--weight-decay", type=float, default=0.01)
    o.add_argument("--warmup", type=int, default=50)
    o.add_argument("--grad-clip", type=float, default=1.0)
    o.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("runtime")
    r.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp")
    r.add_argument("--device", default="auto", help="auto, cpu or cuda")
    r.add_argument("--workers", type=int, default=1, help="data-loading processes per rank")
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    r.add_argument("--resume", default="", help="'auto' (latest checkpoint in --out) or a folder")
    r.add_argument("--eval-every", type=int, default=200)
    r.add_argument("--ckpt-every", type=int, default=100)
    r.add_argument("--log-every", type=int, default=10)
    r.add_argument("--eval-images", type=int, default=40)
    r.add_argument("--eval-points", type=int, default=0)
    r.add_argument("--eval-markers", type=int, default=2)
    r.add_argument("--keep-checkpoints", type=int, default=2)


def _text_mix(spec: str, facts: int):
    from ..core.train.data import TextMix

    mix = TextMix(dense=0.0, point=0.0, marker=0.0, qa=0.0, facts=facts)
    for part in spec.split(","):
        if not part.strip():
            continue
        key, _, val = part.partition("=")
        if key.strip() not in ("dense", "point", "marker", "qa"):
            raise ValueError(f"unknown text kind {key!r} in --text-mix")
        setattr(mix, key.strip(), float(val))
    return mix


def config_from_args(args: argparse.Namespace):
    """Build the :class:`TrainConfig` for parsed arguments (the command line is recorded)."""
    from ..core.train.data import AugmentConfig
    from ..core.train.loop import TrainConfig, parse_stages

    return TrainConfig(
        train_jsonl=list(args.train), eval_jsonl=list(args.eval or []), out_dir=args.out,
        stages=parse_stages(args.stages), init=args.init, arch=args.arch,
        vocab_size=args.vocab_size, canonical_fx=args.canonical_fx,
        max_image_tokens=args.max_image_tokens, batch_size=args.batch_size,
        grad_accum=args.grad_accum, depth_weight=args.depth_weight, lm_weight=args.lm_weight,
        weight_decay=args.weight_decay, warmup_steps=args.warmup, grad_clip=args.grad_clip,
        eval_every=args.eval_every, ckpt_every=args.ckpt_every, log_every=args.log_every,
        eval_images=args.eval_images, eval_points=args.eval_points,
        eval_markers=args.eval_markers, keep_checkpoints=args.keep_checkpoints, seed=args.seed,
        strategy=args.strategy, device=args.device, num_workers=args.workers,
        threads=args.threads,
        augment=AugmentConfig(hflip=args.hflip, jitter=args.jitter, crop=args.crop),
        text_mix=_text_mix(args.text_mix, args.facts), resume=args.resume,
        gt_at_model_size=not args.gt_native,
        command="depthvlm train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 2 and sys.argv[1] == "train" else
        " ".join(shlex.quote(a) for a in sys.argv))


def run(args: argparse.Namespace) -> int:
    """Train; rank 0 prints the final evaluation summary as JSON."""
    import os

    from ..core.train.loop import train

    cfg = config_from_args(args)
    if args.canonical_fx == 0.0 and args.init == "scratch":
        raise SystemExit("depthvlm train: --canonical-fx is required when training from scratch")
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"out": args.out, "final": f"{args.out}/final",
                          "summary": result.get("summary", {}),
                          "depth": result.get("depth", {}),
                          "answers": result.get("answers", {})}, indent=2))
    return 0
