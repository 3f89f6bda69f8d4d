"""What a training run is: its stages, architectures and :class:`TrainConfig`.

:class:`TrainConfig` is the single source of the run's defaults; ``depthvlm train`` takes its
option defaults from these fields. The two text forms the command line uses (stages as
``stage:steps:lr`` and the text mix as ``kind=weight``) are parsed and written here, so that a
default written back to text parses to the same config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .data import AugmentConfig, TextMix
from .losses import SILOG_LAMBDA

__all__ = ["ARCHITECTURES", "DEFAULT_STAGES", "TEXT_KINDS", "StageSpec", "TrainConfig",
           "parse_stages", "format_stages", "scale_stages", "stage_at", "parse_text_mix",
           "format_text_mix"]

#: Named CPU-friendly architectures for models trained from scratch (sizes for tiny_config;
#: the ViT patch, hence the token size, is TrainConfig.patch_size).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # ~0.5 M parameters: tests.
    "test": dict(text_hidden=32, text_layers=1, text_heads=2, text_kv_heads=1, vision_hidden=16,
                 vision_depth=3, vision_heads=1, head_features=16,
                 head_out_channels=(8, 16, 32, 32)),
    # ~3.6 M parameters (~14 MB float32): the embedded model.
    "embedded": dict(text_hidden=128, text_layers=4, text_heads=4, text_kv_heads=2,
                     vision_hidden=96, vision_depth=4, vision_heads=4, head_features=64,
                     head_out_channels=(32, 64, 128, 128)),
    # ~7.5 M parameters: the embedded model's head on a backbone 1.5x as wide (vision also 1.5x
    # as deep), ~1.45x its time per frame; measured against it in the README.
    "embedded_wide": dict(text_hidden=192, text_layers=4, text_heads=4, text_kv_heads=2,
                          vision_hidden=192, vision_depth=6, vision_heads=4, head_features=64,
                          head_out_channels=(32, 64, 128, 128)),
}

#: The default recipe: stage 0 from scratch, then the paper's stages 1 and 2.
DEFAULT_STAGES = "0:2000:1e-3,1:200:5e-4,2:600:2e-4"

#: Text-target kinds a :class:`TextMix` weighs, in the order the text form lists them.
TEXT_KINDS = ("dense", "point", "marker", "qa", "ground")


@dataclass
class StageSpec:
    """One stage of a run: which stage (0, 1, 2), how many optimizer steps, peak LR."""

    stage: int
    steps: int
    lr: float


def parse_stages(text: str) -> list[StageSpec]:
    """Parse ``"0:2000:1e-3,1:200:5e-4,2:600:2e-4"`` (stage:steps:lr, comma separated)."""
    out = []
    for part in text.split(","):
        bits = part.strip().split(":")
        if len(bits) != 3:
            raise ValueError(f"stage spec {part!r} must be stage:steps:lr")
        stage, steps, lr = int(bits[0]), int(bits[1]), float(bits[2])
        if stage not in (0, 1, 2) or steps < 0 or lr <= 0:
            raise ValueError(f"bad stage spec {part!r}")
        out.append(StageSpec(stage, steps, lr))
    if not out:
        raise ValueError("no stages given")
    return out


def format_stages(stages: list[StageSpec]) -> str:
    """The text form of ``stages`` that :func:`parse_stages` reads back."""
    return ",".join(f"{s.stage}:{s.steps}:{s.lr!r}" for s in stages)


def scale_stages(stages: list[StageSpec], total_steps: int) -> list[StageSpec]:
    """``stages`` with the same proportions and learning rates in ``total_steps`` steps.

    Each stage keeps at least one step (a stage of 0 steps stays 0), and the rounding goes to
    the first stage, so the lengths add up to ``total_steps`` exactly whenever that is at least
    the number of stages kept.
    """
    kept = [s for s in stages if s.steps > 0]
    if total_steps < len(kept):
        raise ValueError(f"{total_steps} steps cannot hold {len(kept)} stages")
    whole = sum(s.steps for s in kept)
    steps = [max(1, round(total_steps * s.steps / whole)) if s.steps else 0 for s in stages]
    first = next(i for i, s in enumerate(stages) if s.steps > 0)
    steps[first] += total_steps - sum(steps)
    if steps[first] < 1:
        raise ValueError(f"{total_steps} steps cannot hold the stages {format_stages(stages)}")
    return [StageSpec(s.stage, n, s.lr) for s, n in zip(stages, steps)]


def stage_at(stages: list[StageSpec], step: int) -> int:
    """The stage that global optimizer step ``step`` belongs to (a boundary step: the earlier)."""
    start = 0
    for spec in stages:
        if step <= start + spec.steps:
            return spec.stage
        start += spec.steps
    return stages[-1].stage


def parse_text_mix(spec: str, facts: int) -> TextMix:
    """Parse ``"dense=1,point=2,marker=2,qa=1"``; kinds left out get weight 0."""
    mix = TextMix(**{kind: 0.0 for kind in TEXT_KINDS}, facts=facts)
    for part in spec.split(","):
        if not part.strip():
            continue
        key, _, val = part.partition("=")
        if key.strip() not in TEXT_KINDS:
            raise ValueError(f"unknown text kind {key!r} in --text-mix")
        setattr(mix, key.strip(), float(val))
    return mix


def format_text_mix(mix: TextMix) -> str:
    """The text form of ``mix``'s weights that :func:`parse_text_mix` reads back."""
    return ",".join(f"{kind}={getattr(mix, kind):g}" for kind in TEXT_KINDS)


@dataclass
class TrainConfig:
    """Everything a run needs; written into every checkpoint's meta."""

    train_jsonl: list[str]
    out_dir: str
    stages: list[StageSpec] = field(default_factory=lambda: parse_stages(DEFAULT_STAGES))
    eval_jsonl: list[str] = field(default_factory=list)
    init: str = "scratch"  # "scratch" or a model folder / "embedded"
    arch: str = "embedded"
    # ViT patch of a model trained from scratch: 16 is Qwen3-VL's (32-pixel tokens), 8 gives
    # 16-pixel tokens. A fine-tuned or resumed model keeps its own.
    patch_size: int = 16
    vocab_size: int = 512
    # Deepen the --init model before training, e.g. "vision=8,text=8" (see .grow); "" = as is.
    grow: str = ""
    # 0 = the initial model's meta value, else 1000; a model trained from scratch needs one.
    canonical_fx: float = 0.0
    max_image_tokens: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    depth_weight: float = 1.0
    lm_weight: float = 1.0
    # SILog variance weight: 0.5 is the paper's (half of a wrong global scale forgiven); 0 makes
    # the depth loss the plain RMS log error, which pays for all of it.
    silog_lambda: float = SILOG_LAMBDA
    # Weight of the training-only position readouts (.locate) whenever the LLM trains; 0 = off.
    locate_weight: float = 0.0
    # Weight of the selection loss (.locate): head 0 of LLM layer ``select_layer`` (negative:
    # from the last) attends from grounding replies to the named object's tokens; 0 = off.
    select_weight: float = 0.0
    select_layer: int = -3
    # Weight of the object probes (.locate): the colour and shape of a grounding sample's
    # object, read from its image tokens as they enter LLM layer ``select_layer``; 0 = off.
    object_weight: float = 0.0
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_images: int = 40
    eval_points: int = 0
    eval_markers: int = 2
    seed: int = 0
    strategy: str = "ddp"
    device: str = "auto"
    num_workers: int = 1
    threads: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    text_mix: TextMix = field(default_factory=TextMix)
    resume: str = ""  # "", "auto" (latest in out_dir) or a checkpoint folder
    command: str = ""
    max_depth: float = 1000.0
    gt_at_model_size: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

