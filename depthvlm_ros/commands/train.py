"""``depthvlm train``: staged DepthVLM training on DepthVLM-Bench JSONL data.

Single process::

    depthvlm train --train data/train.jsonl --eval data/val.jsonl --out runs/x \\
        --stages 0:2000:1e-3,1:200:5e-4,2:600:2e-4

Data parallel (one process per GPU, or several Gloo processes on CPU)::

    torchrun --nproc_per_node 2 -m depthvlm_ros.cli train ... --strategy ddp

Stages: 0 = whole model (for models trained from scratch, e.g. the embedded one), 1 = depth
head only (VLM frozen, SILog), 2 = LLM + lm_head + head (vision frozen, LM + depth loss).

Every option that sets a :class:`~depthvlm_ros.core.train.config.TrainConfig` field (or one of
its augmentation / text-mix fields) takes its type and default from that field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from typing import Any

from ..core.errors import ConfigError

__all__ = ["HELP", "add_arguments", "run", "config_from_args"]

HELP = "Train a DepthVLM model in stages (depth + text supervision; torchrun/DDP ready)."

# TrainConfig fields set one option each, by argument group (in --help order). An option is
# named after its field (``grad_accum`` -> ``--grad-accum``) unless _FLAGS renames it.
_DATA_FIELDS = ("canonical_fx", "max_image_tokens")
_AUGMENT_FIELDS = ("hflip", "jitter", "crop")  # AugmentConfig
_MODEL_FIELDS = ("init", "grow", "arch", "patch_size", "vocab_size")
_OPTIMISATION_FIELDS = ("batch_size", "grad_accum", "depth_weight", "lm_weight", "silog_lambda",
                        "locate_weight", "select_weight", "select_layer", "object_weight",
                        "weight_decay",
                        "warmup_steps", "grad_clip", "seed")
_RUNTIME_FIELDS = ("strategy", "device", "num_workers", "threads", "resume", "eval_every",
                   "ckpt_every", "log_every", "eval_images", "eval_points", "eval_markers",
                   "keep_checkpoints")
_FLAGS = {"warmup_steps": "--warmup", "num_workers": "--workers"}
_HELP = {
    "canonical_fx": "canonical focal (pixels); 0 = the initial model's meta value, else 1000",
    "hflip": "horizontal flip probability",
    "jitter": "colour jitter strength",
    "crop": "probability of a random crop batch",
    "facts": "'at (u, v): d m' facts per dense reply",
    "init": "'scratch' (random, --arch) or a model folder / 'embedded' to fine-tune",
    "grow": "deepen the --init model first, keeping its outputs: e.g. vision=8,text=8 "
            "(vision: a multiple of its blocks; text: layers appended)",
    "patch_size": "ViT patch of a model trained from scratch (x merge 2 = pixels per LLM token): "
                  "16 is Qwen3-VL's (32-pixel tokens), 8 makes 16-pixel tokens; a fine-tuned "
                  "model keeps its own",
    "batch_size": "per rank, per micro-step",
    "locate_weight": "weight of two training-only linear readouts of where each image token "
                     "and a grounding reply's object are (see core/train/locate.py); 0 = off",
    "select_weight": "weight of the selection loss: head 0 of LLM layer --select-layer attends "
                     "from grounding replies to the named object's image tokens (see "
                     "core/train/locate.py); 0 = off",
    "select_layer": "LLM layer the selection loss supervises and whose inputs the object "
                    "probes read (negative: from the last)",
    "object_weight": "weight of two training-only linear probes that read a grounding "
                     "object's colour and shape from its image tokens at --select-layer (see "
                     "core/train/locate.py); 0 = off",
    "silog_lambda": "SILog variance weight: 0.5 (the paper's) forgives half of a wrong global "
                    "scale, 0 none of it",
    "device": "auto, cpu or cuda",
    "num_workers": "data-loading processes per rank",
    "threads": "torch CPU threads (0 = default)",
    "resume": "'auto' (latest checkpoint in --out) or a folder",
}


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _dest(name: str) -> str:
    return _flag(name)[2:].replace("-", "_")


def _default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name`` (a fresh one for a factory)."""
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _add_field_options(group, cls: type, names: tuple[str, ...],
                       choices: dict[str, Any] | None = None) -> None:
    """Add one option per field of ``cls``, typed and defaulted by the field."""
    for name in names:
        default = _default(cls, name)
        group.add_argument(_flag(name), type=type(default), default=default,
                           choices=(choices or {}).get(name), help=_HELP.get(name))


def _field_values(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, _dest(name)) for name in names}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options on ``p``."""
    from ..core.train.config import (ARCHITECTURES, TrainConfig, format_stages,
                                     format_text_mix)
    from ..core.train.data import AugmentConfig, TextMix
    from ..core.train.distributed import STRATEGIES

    g = p.add_argument_group("data")
    g.add_argument("--train", nargs="+", required=True, help="training JSONL file(s)")
    g.add_argument("--eval", nargs="*", default=_default(TrainConfig, "eval_jsonl"),
                   help="held-out JSONL file(s)")
    g.add_argument("--out", required=True, help="run folder (checkpoints, log, plot, final)")
    _add_field_options(g, TrainConfig, _DATA_FIELDS)
    _add_field_options(g, AugmentConfig, _AUGMENT_FIELDS)
    g.add_argument("--text-mix", default=format_text_mix(TextMix()),
                   help="weights of text-target kinds, e.g. dense=1,point=2,marker=2,qa=1")
    g.add_argument("--gt-native", action="store_true",
                   help="compute the depth loss at the GT's own resolution (default: on the "
                        "model image's grid, nearest-resized GT)")
    _add_field_options(g, TextMix, ("facts",))
    m = p.add_argument_group("model")
    _add_field_options(m, TrainConfig, _MODEL_FIELDS, {"arch": sorted(ARCHITECTURES)})
    o = p.add_argument_group("optimisation")
    o.add_argument("--stages", default=format_stages(_default(TrainConfig, "stages")),
                   help="comma-separated stage:steps:lr")
    _add_field_options(o, TrainConfig, _OPTIMISATION_FIELDS)
    r = p.add_argument_group("runtime")
    _add_field_options(r, TrainConfig, _RUNTIME_FIELDS, {"strategy": STRATEGIES})


def _command_line() -> str:
    """This process's command line as a shell would take it (recorded in every checkpoint)."""
    if len(sys.argv) > 2 and sys.argv[1] == "train":
        return "depthvlm train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    return " ".join(shlex.quote(a) for a in sys.argv)


def config_from_args(args: argparse.Namespace):
    """Build the :class:`TrainConfig` for parsed arguments (the command line is recorded)."""
    from ..core.train.config import TrainConfig, parse_stages, parse_text_mix
    from ..core.train.data import AugmentConfig

    return TrainConfig(
        train_jsonl=list(args.train), eval_jsonl=list(args.eval or []), out_dir=args.out,
        stages=parse_stages(args.stages),
        augment=AugmentConfig(**_field_values(args, _AUGMENT_FIELDS)),
        text_mix=parse_text_mix(args.text_mix, args.facts),
        gt_at_model_size=not args.gt_native, command=_command_line(),
        **_field_values(args, _DATA_FIELDS + _MODEL_FIELDS + _OPTIMISATION_FIELDS
                        + _RUNTIME_FIELDS))


def run(args: argparse.Namespace) -> int:
    """Train; rank 0 prints the final evaluation summary as JSON."""
    import os

    from ..core.train.loop import train

    cfg = config_from_args(args)
    if args.canonical_fx == 0.0 and args.init == "scratch":
        raise ConfigError("--canonical-fx is required when training from scratch")
    if args.grow:
        from ..core.train.grow import parse_grow

        if args.init == "scratch":
            raise ConfigError("--grow deepens an --init model; from scratch use --arch")
        try:
            parse_grow(args.grow)
        except ValueError as exc:
            raise ConfigError(f"--grow: {exc}") from None
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"out": args.out, "final": f"{args.out}/final",
                          "summary": result.get("summary", {}),
                          "depth": result.get("depth", {}),
                          "answers": result.get("answers", {})}, indent=2))
    return 0
