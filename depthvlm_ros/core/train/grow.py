"""Deepen a trained model without changing what it computes.

A model trained from scratch on these CPUs stops improving long before it stops being
trainable: more steps of the same model buy less each time, and a deeper model started from
random weights needs all of those steps again. Growing keeps what was learnt. New layers are
copies of their neighbours whose output projections are zero, so each new layer starts as the
identity (its residual branch adds nothing) and the grown model gives the same depth and the
same logits as the one it came from, to float rounding; training then uses the new layers.

Where new layers go is fixed by what must not move:

* **Vision tower.** The DeepStack taps read the hidden state after given blocks. Growing from
  ``D`` to ``r * D`` blocks puts ``r - 1`` copies after each original block and moves each tap
  to after the last copy of its block, so every tap gains ``r - 1`` blocks of its own.
* **Language model.** Qwen3-VL adds the DeepStack features after the *first* decoder layers
  (by position), so new layers are appended after the original ones.

The result is still a stock Qwen3-VL config (``depth``, ``deepstack_visual_indexes``,
``num_hidden_layers``) plus the unchanged DPT head, so it saves and loads like any other
DepthVLM folder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..model import DepthVLMForConditionalGeneration

__all__ = ["GrowSpec", "parse_grow", "format_grow", "grow_model"]

_VISION = "model.visual.blocks."
_TEXT = "model.language_model.layers."
# The residual branches' last projections: zero -> the block adds nothing to its input.
_VISION_OUTPUTS = ("attn.proj.weight", "attn.proj.bias", "mlp.linear_fc2.weight",
                   "mlp.linear_fc2.bias")
_TEXT_OUTPUTS = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


@dataclass(frozen=True)
class GrowSpec:
    """Target depths; 0 leaves that part as it is."""

    vision: int = 0  # vision blocks (a multiple of the current count)
    text: int = 0    # decoder layers (at least the current count)


def parse_grow(text: str) -> GrowSpec:
    """Parse ``"vision=8,text=8"`` (either part may be left out)."""
    values: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or key not in ("vision", "text"):
            raise ValueError(f"grow spec {part!r} must be vision=N or text=N")
        try:
            values[key] = int(val)
        except ValueError:
            raise ValueError(f"grow spec {part!r}: {val!r} is not a whole number") from None
        if values[key] < 1:
            raise ValueError(f"grow spec {part!r}: depth must be at least 1")
    return GrowSpec(**values)


def format_grow(spec: GrowSpec) -> str:
    """The text form of ``spec`` that :func:`parse_grow` reads back."""
    return ",".join(f"{k}={v}" for k, v in (("vision", spec.vision), ("text", spec.text)) if v)


def _layer_plan(old: int, new: int, interleave: bool) -> list[tuple[int, bool]]:
    """For each new layer: (the old layer it copies, whether it is an original)."""
    if interleave:
        r = new // old
        return [(i, j == 0) for i in range(old) for j in range(r)]
    return [(i, True) for i in range(old)] + [(old - 1, False)] * (new - old)


def _renumber(state: dict[str, torch.Tensor], prefix: str, plan: list[tuple[int, bool]],
              outputs: tuple[str, ...]) -> dict[str, torch.Tensor]:
    kept = {k: v for k, v in state.items() if not k.startswith(prefix)}
    for new_index, (old_index, original) in enumerate(plan):
        src = f"{prefix}{old_index}."
        for key, value in state.items():
            if key.startswith(src):
                name = key[len(src):]
                tensor = value.clone()
                if not original and name in outputs:
                    tensor.zero_()
                kept[f"{prefix}{new_index}.{name}"] = tensor
    return kept


def grow_model(model: DepthVLMForConditionalGeneration, spec: GrowSpec
               ) -> DepthVLMForConditionalGeneration:
    """A deeper copy of ``model`` that computes the same outputs (see the module text).

    Raises:
        ValueError: a target that is not a multiple of the vision depth, or that is smaller
            than the current depth.
    """
    cfg = copy.deepcopy(model.config)
    vision, text = cfg.vision_config, cfg.text_config
    old_v, old_t = int(vision.depth), int(text.num_hidden_layers)
    new_v, new_t = spec.vision or old_v, spec.text or old_t
    if new_v % old_v:
        raise ValueError(f"vision depth {new_v} is not a multiple of the model's {old_v}")
    if new_t < old_t:
        raise ValueError(f"text depth {new_t} is below the model's {old_t}")
    r = new_v // old_v
    vision.depth = new_v
    vision.deepstack_visual_indexes = [r * i + r - 1 for i in vision.deepstack_visual_indexes]
    text.num_hidden_layers = new_t
    if getattr(text, "layer_types", None):
        text.layer_types = list(text.layer_types) + [text.layer_types[-1]] * (new_t - old_t)

    state = model.state_dict()
    state = _renumber(state, _VISION, _layer_plan(old_v, new_v, interleave=True), _VISION_OUTPUTS)
    state = _renumber(state, _TEXT, _layer_plan(old_t, new_t, interleave=False), _TEXT_OUTPUTS)
    grown = DepthVLMForConditionalGeneration(cfg)
    if "lm_head.weight" not in state:  # tied to the embeddings; the module ties it again
        state["lm_head.weight"] = state["model.language_model.embed_tokens.weight"]
    grown.load_state_dict(state, strict=True)
    return grown.to(next(model.parameters()).dtype)
