"""The analytic FLOP model of a depth-only frame, and the peak it is measured against.

:func:`frame_flops` counts the matrix and convolution FLOPs of one depth-only frame from a
model config alone, so the full-architecture benchmark (:mod:`.arch`) can put a compute-bound
limit, ``peak_flops / flops_per_frame``, next to the frames/s it measures.
"""

from __future__ import annotations

from typing import Any, Sequence

from transformers import Qwen3VLConfig

from ..depth_head import DEFAULT_FEATURES, DEFAULT_OUT_CHANNELS

__all__ = ["H100_BF16_DENSE_FLOPS", "frame_flops", "format_flops"]

#: Dense bf16 tensor-core peak of one H100 SXM (datasheet, no sparsity). The H200 is the same
#: chip with faster memory, so the same figure applies to it.
H100_BF16_DENSE_FLOPS = 989e12

#: Width of the DPT head's last hidden conv (fixed in the release, see depth_head.py).
_HEAD_HIDDEN = 32


def _conv(h: int, w: int, k: int, c_in: int, c_out: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of a k x k conv producing an h x w map (bias ignored)."""
    return 2 * h * w * k * k * c_in * c_out


def _head_flops(dim_in: int, features: int, channels: Sequence[int], gh: int, gw: int,
                out_hw: tuple[int, int]) -> int:
    """Conv FLOPs of :class:`~depthvlm_ros.core.depth_head.DPTDepthHead` for one image."""
    c1, c2, c3, c4 = (int(c) for c in channels)
    f = int(features)
    sizes = [(8 * gh, 8 * gw), (4 * gh, 4 * gw), (2 * gh, 2 * gw), (gh, gw)]
    total = sum(_conv(gh, gw, 1, dim_in, c) for c in (c1, c2, c3, c4))  # 1x1 projects
    # Transposed convs with kernel = stride: every input pixel feeds k*k outputs per channel pair.
    total += sum(_conv(gh, gw, k, c, c) for k, c in ((8, c1), (4, c2), (2, c3)))
    total += sum(_conv(h, w, 3, c, f) for (h, w), c in zip(sizes, (c1, c2, c3, c4)))  # layerN_rn

    def rcu(h: int, w: int) -> int:  # residual conv unit: two 3x3 convs
        return 2 * _conv(h, w, 3, f, f)

    total += rcu(gh, gw) + _conv(2 * gh, 2 * gw, 1, f, f)                   # refinenet4
    total += 2 * rcu(2 * gh, 2 * gw) + _conv(4 * gh, 4 * gw, 1, f, f)       # refinenet3
    total += 2 * rcu(4 * gh, 4 * gw) + _conv(8 * gh, 8 * gw, 1, f, f)       # refinenet2
    total += 2 * rcu(8 * gh, 8 * gw) + _conv(16 * gh, 16 * gw, 1, f, f)     # refinenet1
    total += _conv(16 * gh, 16 * gw, 3, f, f // 2)                          # output_conv1
    oh, ow = out_hw
    total += _conv(oh, ow, 3, f // 2, _HEAD_HIDDEN) + _conv(oh, ow, 1, _HEAD_HIDDEN, 1)
    return total


def frame_flops(config: Qwen3VLConfig, grid_hw: tuple[int, int], seq_len: int,
                out_hw: tuple[int, int] | None = None, causal: bool = True) -> dict[str, Any]:
    """Matmul/conv FLOPs of one depth-only frame, counted from the config's dimensions.

    Every matrix product counts ``2 m n k``; convolutions count 2 per multiply-add; biases,
    norms, activations, rotary tables, interpolation and softmax are not counted (they are
    memory-bound, not tensor-core work). Three parts:

    * vision tower over ``4 gh gw`` patches: the Conv3d patch embedding, per block the qkv,
      output and two MLP projections plus bidirectional attention (``QK^T`` and ``AV``, each
      ``2 N^2 D``), and the merger plus the DeepStack mergers over the ``gh gw`` merged tokens;
    * LLM prefill over ``seq_len`` tokens (the image prefix the pipeline feeds): q/k/v/o
      (grouped-query) and the gated MLP per layer, and causal attention, which counts the
      ``L (L + 1) / 2`` query-key pairs a causal kernel computes (``causal=False``: all
      ``L^2``, what a kernel that masks after the fact computes). No ``lm_head``: depth-only
      frames never compute logits;
    * the DPT head at the token grid, output ``out_hw`` (default the model image: ``p gh x
      p gw`` for ``p`` = patch x merge pixels a token, 32 for Qwen3-VL).

    Args:
        config: the model config (``vision_config``, ``text_config``, ``depth_head_*``).
        grid_hw: LLM token grid ``(gh, gw)``.
        seq_len: tokens in the prefill (prefix text + ``gh gw`` image tokens + vision end).
        out_hw: depth output size of the head.
        causal: count only the causal half of the LLM's attention.

    Returns:
        FLOPs as Python ints: ``vision``, ``llm``, ``head``, ``total`` and a ``parts`` dict.
    """
    v, t = config.vision_config, config.text_config
    gh, gw = (int(x) for x in grid_hw)
    merge = int(v.spatial_merge_size)
    n_tok = gh * gw
    n_patch = n_tok * merge * merge
    d, inter = int(v.hidden_size), int(v.intermediate_size)
    patch_in = int(v.in_channels) * int(v.temporal_patch_size) * int(v.patch_size) ** 2
    parts: dict[str, int] = {}
    parts["vision_patch_embed"] = 2 * n_patch * patch_in * d
    parts["vision_linear"] = int(v.depth) * 2 * n_patch * (3 * d * d + d * d + 2 * d * inter)
    parts["vision_attention"] = int(v.depth) * 2 * (2 * n_patch * n_patch * d)
    merged = d * merge * merge
    n_mergers = 1 + len(v.deepstack_visual_indexes)
    parts["vision_mergers"] = n_mergers * 2 * n_tok * (merged * merged
                                                       + merged * int(v.out_hidden_size))
    c, heads, kv = int(t.hidden_size), int(t.num_attention_heads), int(t.num_key_value_heads)
    hd = int(getattr(t, "head_dim", None) or c // heads)
    ti, layers, length = int(t.intermediate_size), int(t.num_hidden_layers), int(seq_len)
    parts["llm_linear"] = layers * 2 * length * (c * heads * hd + 2 * c * kv * hd
                                                 + heads * hd * c + 3 * c * ti)
    pairs = length * (length + 1) // 2 if causal else length * length
    parts["llm_attention"] = layers * 2 * (2 * pairs * heads * hd)
    tp = int(v.patch_size) * merge
    out_hw = tuple(out_hw) if out_hw is not None else (tp * gh, tp * gw)
    parts["head"] = _head_flops(c, int(getattr(config, "depth_head_features", DEFAULT_FEATURES)),
                                getattr(config, "depth_head_out_channels", DEFAULT_OUT_CHANNELS),
                                gh, gw, out_hw)
    vision = sum(v_ for k, v_ in parts.items() if k.startswith("vision_"))
    llm = parts["llm_linear"] + parts["llm_attention"]
    return {"vision": vision, "llm": llm, "head": parts["head"],
            "total": vision + llm + parts["head"], "parts": parts, "causal_attention": causal,
            "grid": [gh, gw], "vision_patches": n_patch, "seq_len": length,
            "out_hw": list(out_hw)}


def format_flops(value: float) -> str:
    """``value`` FLOPs in TFLOP from 0.1 TFLOP up, else in GFLOP (three decimals)."""
    return f"{value / 1e12:.3f} TFLOP" if value >= 1e11 else f"{value / 1e9:.3f} GFLOP"
