"""Training-only position readouts that ask the language model to know where things are.

Trained with the answer loss alone, the embedded model's grounding reply comes out as the
training set's average box whatever object is named: a cross-entropy on coordinate digits
rewards the marginal long before it rewards reading this image. Two linear readouts give the
language model a dense, continuous signal instead:

* **token readout**: from the LLM's last hidden state at every image token, that token's own
  centre as a fraction of the image width and height. Nothing else asks the image states to keep
  the column they came from (depth needs the row more than the column), and a reply can only
  read a position that the states it attends to still carry.
* **reply readout**: from the hidden state at every position of a grounding reply (the one
  before its first token included), the named object's box centre in the same fractions. That
  is where the model has to have fetched the object's position before it writes a coordinate.

Both are mean squared errors in image fractions, weighted by ``--locate-weight``. The readouts
are not part of the model: they live next to it in the training step, are saved with each
checkpoint (``locate_readouts.safetensors``) so that a resumed run continues them, and are left
out of every model folder, which stays a stock Qwen3-VL plus the DPT head.

Measured, the token readout is learnt within a hundred steps but the reply readout stays no
better than always answering the average centre: the image states know where they are, the
reply does not know which of them the words name. **Selection** (``--select-weight``) teaches
that step on the model's own attention, with no new parameters: one head of one LLM layer
(``--select-layer``, head 0) is asked to put its attention, from every position of a
grounding reply, on the image tokens that lie inside the named object's box (the negative log
of that attention mass). The head's weights are recomputed from the layer's own inputs, so
the loss supervises exactly the attention the model runs at inference, whatever attention
kernel it uses.

Measured, selection cannot find what the image tokens do not carry: linear probes read an
object's colour from its tokens at 45 % and its shape at chance. **Object probes**
(``--object-weight``) ask for it directly: two training-only linear classifiers read, from
the state of every image token inside a grounding sample's object box as it enters the same
layer's self-attention, the object's colour and shape (the first and last word of its name,
among the synthetic generator's :data:`COLOUR_NAMES` and :data:`OBJECT_SHAPES`); the loss is
their cross-entropy. Like the readouts they are saved with each checkpoint
(``object_probes.safetensors``) and left out of every model folder. Measured on the embedded
model (1100 steps with the selection loss), they raised the colour a fresh probe reads from
an object's tokens from 45 to 54 % and left its shape at chance; pointing did not move.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..bench.synthetic.objects import COLOUR_NAMES, OBJECT_SHAPES

__all__ = ["LocateReadouts", "READOUTS_FILE", "token_centres", "token_readout_error",
           "locate_loss", "save_training_module", "load_training_module", "box_tokens",
           "AttentionInputs", "capture_attention_inputs", "head_attention", "box_attention_mass",
           "selection_loss", "reply_positions", "check_llm_layer", "load_for_grounding",
           "named_objects", "grounding_passes", "ObjectProbes", "OBJECT_PROBES_FILE",
           "object_classes", "object_loss"]

#: File of a checkpoint folder that holds the readouts' weights.
READOUTS_FILE = "locate_readouts.safetensors"
#: File of a checkpoint folder that holds the object probes' weights.
OBJECT_PROBES_FILE = "object_probes.safetensors"


class LocateReadouts(nn.Module):
    """The two linear readouts (hidden size -> x, y as fractions of the image)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.token_xy = nn.Linear(hidden_size, 2)
        self.reply_xy = nn.Linear(hidden_size, 2)


def token_centres(grid_h: int, grid_w: int, device=None) -> torch.Tensor:
    """Centre of each LLM image token as ``(x, y)`` fractions of the image, (gh, gw, 2).

    The model's image is the whole input resized (no crop, no padding), so token ``(r, c)``
    covers columns ``c / gw .. (c + 1) / gw`` of the image's width, and likewise for rows.
    """
    ys = (torch.arange(grid_h, device=device, dtype=torch.float32) + 0.5) / grid_h
    xs = (torch.arange(grid_w, device=device, dtype=torch.float32) + 0.5) / grid_w
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def token_readout_error(readouts: LocateReadouts, image_hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the token readout over ``image_hidden`` (B, gh, gw, C)."""
    gh, gw = image_hidden.shape[1:3]
    centres = token_centres(gh, gw, image_hidden.device).expand(image_hidden.shape[0], -1, -1, -1)
    return F.mse_loss(readouts.token_xy(image_hidden.float()), centres)


def reply_positions(labels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: positions whose next token is a trained reply token of a grounding sample.

    ``labels[:, t]`` is predicted from position ``t - 1``; ``boxes`` (B, 4) is NaN for
    samples that are not grounding ones.
    """
    grounded = torch.isfinite(boxes.to(labels.device)).all(dim=1)
    predicting = torch.zeros_like(labels, dtype=torch.bool)
    predicting[:, :-1] = labels[:, 1:] != -100
    return predicting & grounded[:, None]


def locate_loss(readouts: LocateReadouts, hidden: torch.Tensor, image_hidden: torch.Tensor,
                labels: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Token readout error plus reply readout error, each a mean over where it applies.

    Args:
        readouts: the two readouts.
        hidden: LLM last hidden state, (B, L, C).
        image_hidden: ``hidden`` at the image tokens, (B, gh, gw, C).
        labels: (B, L) answer labels, ``-100`` where no answer token is predicted;
            ``labels[:, t]`` is predicted from ``hidden[:, t - 1]``.
        boxes: (B, 4) the named object's box ``(x0, y0, x1, y1)`` in image fractions for
            grounding samples, NaN for every other sample; the readout is taught its centre.

    Returns:
        A scalar tensor. A batch without grounding samples still passes through the reply
        readout (times zero) so that every rank of a data-parallel job uses every parameter.
    """
    token_err = token_readout_error(readouts, image_hidden)
    boxes = boxes.to(hidden.device, torch.float32)
    target_xy = (boxes[:, :2] + boxes[:, 2:]) / 2
    predicting = reply_positions(labels, boxes)
    if not bool(predicting.any()):
        return token_err + readouts.reply_xy(hidden[:, :1].float()).sum() * 0.0
    rows = predicting.nonzero()[:, 0]
    reply_err = F.mse_loss(readouts.reply_xy(hidden[predicting].float()), target_xy[rows])
    return token_err + reply_err


def save_training_module(module: nn.Module, folder: Path, file: str = READOUTS_FILE) -> None:
    """Write a training-only module's weights (readouts, object probes) into ``folder/file``."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
              str(Path(folder) / file))


def load_training_module(module: nn.Module, folder: Path, file: str = READOUTS_FILE) -> bool:
    """Load a training-only module from ``folder/file``; False when absent (left as it is)."""
    from safetensors.torch import load_file

    path = Path(folder) / file
    if not path.is_file():
        return False
    module.load_state_dict(load_file(str(path)))
    return True


def box_tokens(boxes: torch.Tensor, grid_h: int, grid_w: int,
               min_cover: float = 0.25) -> torch.Tensor:
    """(B, gh, gw) bool: the image tokens that belong to each box (B, 4), in image fractions.

    A token belongs when the box covers at least ``min_cover`` of its cell; the token holding
    the box centre always does, so a box smaller than a token still has one. Rows of ``boxes``
    that are NaN give no tokens.
    """
    boxes = boxes.float()
    y0s = torch.arange(grid_h, device=boxes.device, dtype=torch.float32) / grid_h
    x0s = torch.arange(grid_w, device=boxes.device, dtype=torch.float32) / grid_w
    bx0, by0, bx1, by1 = (boxes[:, i, None] for i in range(4))
    cover_x = ((torch.minimum(x0s + 1 / grid_w, bx1) - torch.maximum(x0s, bx0)).clamp(min=0)
               * grid_w)
    cover_y = ((torch.minimum(y0s + 1 / grid_h, by1) - torch.maximum(y0s, by0)).clamp(min=0)
               * grid_h)
    inside = cover_y[:, :, None] * cover_x[:, None, :] >= min_cover
    finite = torch.isfinite(boxes).all(dim=1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    col = (centre[:, 0].nan_to_num(0) * grid_w).long().clamp(0, grid_w - 1)
    row = (centre[:, 1].nan_to_num(0) * grid_h).long().clamp(0, grid_h - 1)
    rows = torch.arange(len(boxes), device=boxes.device)
    inside[rows[finite], row[finite], col[finite]] = True
    return inside & finite[:, None, None]


class AttentionInputs:
    """What one decoder layer's self-attention was called with in the last forward pass."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.hidden_states: torch.Tensor | None = None
        self.position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None


def check_llm_layer(model: nn.Module, layer: int, flag: str = "--select-layer") -> None:
    """Raise ValueError unless ``layer`` (negative: from the last) is one of the LLM's layers."""
    n_layers = model.config.text_config.num_hidden_layers
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"{flag} {layer} is outside the LLM's {n_layers} layers")


@contextmanager
def capture_attention_inputs(model: nn.Module, layer: int) -> Iterator[AttentionInputs]:
    """Record the inputs of LLM decoder layer ``layer``'s self-attention while inside.

    ``layer`` counts from 0; negative counts from the last layer. The hook only keeps
    references (no copies) and is removed on leaving, whatever happens inside.
    """
    check_llm_layer(model, layer)
    attn = model.model.language_model.layers[layer].self_attn
    captured = AttentionInputs(attn)

    def keep(_module, args, kwargs):
        captured.hidden_states = kwargs.get("hidden_states", args[0] if args else None)
        captured.position_embeddings = kwargs.get("position_embeddings")

    handle = attn.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()


def head_attention(inputs: AttentionInputs, head: int = 0) -> torch.Tensor:
    """Causal attention probabilities (B, L, L) of one query head, from the captured inputs.

    This is the layer's own arithmetic (projections, per-head RMS norms, M-RoPE, scaling) for
    one head, so its gradient reaches the same weights the layer's attention uses.
    """
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb

    attn, x = inputs.module, inputs.hidden_states
    if x is None or inputs.position_embeddings is None:
        raise RuntimeError("no attention inputs captured (was the layer run inside "
                           "capture_attention_inputs?)")
    batch, length = x.shape[:2]
    hd = attn.head_dim
    q = attn.q_norm(attn.q_proj(x).view(batch, length, -1, hd)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(batch, length, -1, hd)).transpose(1, 2)
    cos, sin = inputs.position_embeddings
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    kv_head = head // attn.num_key_value_groups
    scores = (q[:, head].float() @ k[:, kv_head].float().transpose(-1, -2)) * attn.scaling
    future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(dim=-1)


def box_attention_mass(probs: torch.Tensor, image_mask: torch.Tensor,
                       grid_hw: tuple[int, int], boxes: torch.Tensor) -> torch.Tensor:
    """(B, L) attention mass that each position puts on the image tokens inside its row's box.

    Args:
        probs: (B, L, L) attention probabilities (query, key).
        image_mask: (B, L) bool, the image tokens (row-major over the token grid).
        grid_hw: the token grid.
        boxes: (B, 4) boxes in image fractions (NaN: no box, mass 0).
    """
    inside = box_tokens(boxes.to(probs.device), *grid_hw)
    key_in_box = torch.zeros(image_mask.shape, dtype=probs.dtype, device=probs.device)
    key_in_box[image_mask] = inside.reshape(-1).to(probs.dtype)
    return (probs * key_in_box[:, None, :]).sum(dim=-1)


def selection_loss(inputs: AttentionInputs, image_mask: torch.Tensor, grid_hw: tuple[int, int],
                   labels: torch.Tensor, boxes: torch.Tensor, head: int = 0) -> torch.Tensor:
    """Negative log attention mass of one head on the named object, over grounding replies.

    A batch without grounding samples returns a zero that still depends on the layer's
    query and key weights, so every rank of a data-parallel job has the same graph.
    """
    probs = head_attention(inputs, head)
    predicting = reply_positions(labels, boxes)
    if not bool(predicting.any()):
        return probs[:, -1, 0].sum() * 0.0
    mass = box_attention_mass(probs, image_mask, grid_hw, boxes)
    return -mass[predicting].clamp_min(1e-6).log().mean()


class ObjectProbes(nn.Module):
    """Two linear probes (hidden size -> colour names, hidden size -> shapes) of image tokens."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.colour = nn.Linear(hidden_size, len(COLOUR_NAMES))
        self.shape = nn.Linear(hidden_size, len(OBJECT_SHAPES))


def object_classes(label: str | None) -> tuple[int, int]:
    """``(colour, shape)`` class indices of an object's name, -100 for a word not in the lists.

    "red box" gives ``(COLOUR_NAMES.index("red"), OBJECT_SHAPES.index("box"))``; a name from
    other data ("the door") is ignored by the loss rather than guessed.
    """
    words = label.split() if isinstance(label, str) else []
    colour = COLOUR_NAMES.index(words[0]) if words and words[0] in COLOUR_NAMES else -100
    shape = OBJECT_SHAPES.index(words[-1]) if words and words[-1] in OBJECT_SHAPES else -100
    return colour, shape


def object_loss(probes: ObjectProbes, inputs: AttentionInputs, image_mask: torch.Tensor,
                grid_hw: tuple[int, int], boxes: torch.Tensor,
                classes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the object probes on the image tokens inside each sample's box.

    Args:
        probes: the two probes.
        inputs: the captured inputs of the layer's self-attention.
        image_mask: (B, L) bool, the image tokens.
        grid_hw: the token grid.
        boxes: (B, 4) object boxes in image fractions, NaN for samples without one.
        classes: (B, 2) ``(colour, shape)`` per sample (:func:`object_classes`), -100 where
            unknown.

    Returns:
        Colour plus shape cross-entropy, each a mean over the tokens it applies to. A batch
        with no labelled object token gives a zero still tied to both probes, so that every
        rank of a data-parallel job uses every parameter.
    """
    if inputs.hidden_states is None:
        raise RuntimeError("no attention inputs captured (was the layer run inside "
                           "capture_attention_inputs?)")
    states = inputs.hidden_states
    tokens = states[image_mask].reshape(states.shape[0], *grid_hw, -1).float()
    inside = box_tokens(boxes.to(tokens.device), *grid_hw)
    rows = inside.nonzero()[:, 0]
    x = tokens[inside]
    classes = classes.to(tokens.device)
    zero = (probes.colour(tokens[:, 0, 0]).sum() + probes.shape(tokens[:, 0, 0]).sum()) * 0.0
    loss = zero
    for head, column in ((probes.colour, 0), (probes.shape, 1)):
        target = classes[rows, column]
        known = target != -100
        if bool(known.any()):
            loss = loss + F.cross_entropy(head(x[known]), target[known])
    return loss


def load_for_grounding(folder: str | Path):
    """A model folder or checkpoint for scoring grounding, as the scripts that do it need it.

    Returns:
        ``(model, tokenizer, builder)``: the model in eval mode, its tokenizer, and a
        :class:`~.data.SampleBuilder` that makes the grounding sample of a record exactly as
        training does (same resize, prompt and reply) but without augmentation. It has no
        image-objects map, so each record's own object is the one asked about.
    """
    from transformers import AutoTokenizer

    from ..camera import vision_patching
    from ..config import DepthVLMConfig
    from ..folders import folder_canonical_fx, read_meta, resolve_model_path
    from ..model import load_depthvlm
    from ..pipeline import DepthVLMPipeline
    from .data import AugmentConfig, SampleBuilder, TextMix

    folder = resolve_model_path(str(folder))
    model = load_depthvlm(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    fx = folder_canonical_fx(folder)
    pipe = DepthVLMPipeline(model, tokenizer, DepthVLMConfig(
        canonical_fx=fx, max_image_tokens=int(read_meta(folder).get("max_image_tokens", 256)),
        device="cpu", head_backend="torch"), model_canonical_fx=fx)
    patch, merge = vision_patching(model.config)
    builder = SampleBuilder(pipe.prompt_ids, tokenizer,
                            tokenizer.convert_tokens_to_ids("<|im_end|>"), fx,
                            pipe.config.max_image_tokens, AugmentConfig(hflip=0, jitter=0, crop=0),
                            TextMix(), patch_size=patch, merge_size=merge)
    return model, tokenizer, builder


def named_objects(paths, limit: int = 0) -> list:
    """The records of JSONL splits ``paths`` that name an object with a box (first ``limit``)."""
    from ..bench.jsonl import read_jsonl

    named = [r for p in paths for r in read_jsonl(p)
             if r.extra.get("object_box") is not None
             and isinstance(r.extra.get("object_label"), str) and r.extra["object_label"].split()]
    return named[:limit] if limit else named


def grounding_passes(model: nn.Module, tokenizer, builder, records, layer: int):
    """Run the grounding question of each record through ``model``, capturing ``layer``.

    Yields ``(record, sample, batch, enc, inputs)`` per record that gives a grounding sample:
    the sample and its one-row batch as ``builder`` makes them (no augmentation), the encoded
    sequence and the captured inputs of ``layer``'s self-attention. The pass runs without
    gradients; what the caller computes from it is up to the caller.
    """
    import numpy as np

    from .data import collate

    for record in records:
        sample = builder.build(record, np.random.default_rng(0), kind="ground", augment=False)
        if sample.locate_box is None:
            continue
        batch = collate([sample], tokenizer.pad_token_id)
        with torch.no_grad(), capture_attention_inputs(model, layer) as inputs:
            enc = model.encode(batch["input_ids"], batch["pixel_values"], batch["image_grid_thw"])
        yield record, sample, batch, enc, inputs
