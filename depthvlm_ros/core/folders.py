"""Model folders: the embedded model, tiny random models, and writing self-describing folders.

A model folder is a standard Hugging Face folder: ``config.json``, ``*.safetensors``,
tokenizer files, ``preprocessor_config.json`` and our ``depthvlm_meta.json`` (what made it:
stage, step, metrics, command, resize mode). DepthVLM-4B folders and ours load through the
same code; the meta file is also how the two are told apart (:func:`folder_resize_mode`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .camera import RESIZE_MODES, vision_patching
from .errors import ModelLoadError
from .model import PREPROCESSOR_DEFAULTS, DepthVLMForConditionalGeneration, tiny_config
from .tokenizer import SPECIAL_TOKENS, build_tokenizer

__all__ = ["EMBEDDED_DIR", "resolve_model_path", "make_tiny_model", "write_model_folder",
           "read_preprocessor", "read_meta", "folder_resize_mode", "folder_canonical_fx",
           "DEFAULT_CANONICAL_FX", "write_sharded_safetensors", "META_FILE"]

#: Folder of the small model shipped inside the package (``model_path: embedded``).
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "embedded"
META_FILE = "depthvlm_meta.json"
#: Focal (pixels) of the canonical camera of DepthVLM-4B, for folders that record none.
DEFAULT_CANONICAL_FX = 1000.0


def resolve_model_path(model_path: str) -> Path:
    """Map ``embedded`` to the shipped model, expand ``~``; the folder must exist."""
    if model_path == "embedded":
        path = EMBEDDED_DIR
    else:
        path = Path(os.path.expanduser(model_path))
    if not path.is_dir():
        raise ModelLoadError(f"model folder {path} does not exist")
    return path


def make_tiny_model(seed: int = 0, vocab_size: int = 512, **sizes: Any):
    """A random DepthVLM of a few MB and its tokenizer, deterministic for ``seed``.

    ``sizes`` are passed to :func:`tiny_config` (text_hidden, vision_depth, head_features...).
    """
    tokenizer = build_tokenizer(vocab_size=vocab_size, seed=seed)
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = tiny_config(len(tokenizer), special, **sizes)
    torch.manual_seed(seed)
    model = DepthVLMForConditionalGeneration(config).eval()
    # Start the head near 2 m instead of softplus(0) = 0.69 m: a sane depth before training.
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(1.85)
    return model, tokenizer


def write_model_folder(model: DepthVLMForConditionalGeneration, tokenizer, out: str | os.PathLike,
                       meta: dict[str, Any] | None = None,
                       preprocessor: dict[str, Any] | None = None) -> Path:
    """Write a self-describing HF folder (safetensors only) and return its path.

    Without ``preprocessor`` the folder gets Qwen3-VL's, with the model's own patch and merge
    sizes (a patch-8 model's processor must cut 8-pixel patches).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if preprocessor is None:
        patch, merge = vision_patching(model.config)
        preprocessor = {**PREPROCESSOR_DEFAULTS, "patch_size": patch, "merge_size": merge}
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    # Our training uses the metric resize plan; a caller that trained otherwise says so in meta.
    info = {"format": "depthvlm-hf-folder/1",
            "parameters": sum(p.numel() for p in model.parameters()),
            "resize_mode": "metric"}
    info.update(meta or {})
    (out / META_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return out


def read_preprocessor(folder: str | os.PathLike) -> dict[str, Any]:
    """Preprocessing settings of a folder, Qwen3-VL defaults for missing keys.

    Patch and merge may be any positive size (``depthvlm check`` compares them with the
    model's ``vision_config``); the temporal patch must be Qwen3-VL's 2.
    """
    values = dict(PREPROCESSOR_DEFAULTS)
    path = Path(folder) / "preprocessor_config.json"
    if path.is_file():
        try:
            values.update(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None
    for key in ("patch_size", "merge_size"):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(f"{path}: {key}={value!r} is not a positive integer")
    if int(values["temporal_patch_size"]) != 2:
        raise ModelLoadError(f"{path}: temporal_patch_size={values['temporal_patch_size']} is "
                             "not supported (Qwen3-VL uses 2)")
    return values


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """Our ``depthvlm_meta.json`` if present (empty for third-party folders such as DepthVLM-4B)."""
    path = Path(folder) / META_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def folder_resize_mode(folder: str | os.PathLike) -> str:
    """The resize convention a model folder expects: what ``resize_mode: auto`` resolves to.

    A folder without ``depthvlm_meta.json`` is a third-party one, i.e. the authors' DepthVLM
    release: ``release``. Our folders record ``resize_mode`` in the meta file; those written
    before the key existed (the shipped embedded model among them) were trained with the
    metric plan: ``metric``.

    Raises:
        ModelLoadError: the meta file names a mode we do not know.
    """
    if not (Path(folder) / META_FILE).is_file():
        return "release"
    mode = read_meta(folder).get("resize_mode", "metric")
    if mode not in RESIZE_MODES:
        raise ModelLoadError(f"{Path(folder) / META_FILE}: resize_mode {mode!r} is not one of "
                             f"{', '.join(RESIZE_MODES)}")
    return mode


def folder_canonical_fx(folder: str | os.PathLike) -> float:
    """The canonical focal a model folder was trained for: what ``canonical_fx: 0`` uses.

    Our folders record it in ``depthvlm_meta.json``; the release records none and was trained
    at :data:`DEFAULT_CANONICAL_FX`.
    """
    value = read_meta(folder).get("canonical_fx")
    return float(value) if value else DEFAULT_CANONICAL_FX


def write_sharded_safetensors(
        specs: Iterable[tuple[str, tuple[int, ...], torch.dtype]], out: str | os.PathLike,
        make_tensor: Callable[[str, tuple[int, ...], torch.dtype], torch.Tensor],
        max_shard_bytes: int = 4 << 30, metadata: dict[str, str] | None = None) -> list[Path]:
    """Write tensors as safetensors shards plus ``model.safetensors.index.json``, streaming.

    The layout is transformers' (``model-0000K-of-0000N.safetensors``, the index's
    ``weight_map`` and ``metadata.total_size``). Each tensor is made by ``make_tensor`` only
    when its bytes are written and dropped right after, so memory never holds more than one
    tensor: a 9 GB checkpoint is written in a few hundred MB.

    Args:
        specs: (name, shape, dtype) of every tensor, in file order.
        out: the folder.
        make_tensor: builds the tensor of a spec (CPU, contiguous, that shape and dtype).
        max_shard_bytes: a new shard starts before a tensor that would exceed this.
        metadata: ``__metadata__`` of every shard (default ``{"format": "pt"}``).

    Returns:
        The shard paths.
    """
    from .check.headers import INDEX_FILE

    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
    specs = list(specs)
    shards: list[list[tuple[str, tuple[int, ...], torch.dtype, int]]] = [[]]
    used = 0
    for name, shape, dtype in specs:
        nbytes = math.prod(shape) * torch.tensor([], dtype=dtype).element_size()
        if shards[-1] and used + nbytes > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append((name, tuple(shape), dtype, nbytes))
        used += nbytes
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    paths = []
    for k, shard in enumerate(shards, start=1):
        path = out / f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        for name, shape, dtype, nbytes in shard:
            header[name] = {"dtype": names[dtype], "shape": list(shape),
                            "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = path.name
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
        with open(path, "wb") as fh:
            fh.write(len(text).to_bytes(8, "little"))
            fh.write(text)
            for name, shape, dtype, nbytes in shard:
                tensor = make_tensor(name, shape, dtype).contiguous()
                if tuple(tensor.shape) != shape or tensor.dtype != dtype:
                    raise ValueError(f"make_tensor gave {name} as {tensor.dtype} "
                                     f"{list(tensor.shape)}, not {dtype} {list(shape)}")
                fh.write(tensor.view(torch.uint8).reshape(-1).numpy().data if nbytes else b"")
                del tensor
        paths.append(path)
    total = sum(nbytes for shard in shards for *_, nbytes in shard)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return paths
