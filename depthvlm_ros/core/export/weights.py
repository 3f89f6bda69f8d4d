"""The head's weights: the hash that names an export, and reading them alone from a folder."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..depth_head import DPTDepthHead
from ..errors import ConfigError, ExportError, ModelLoadError

__all__ = ["EXPORT_FORMAT", "head_weights_sha256", "load_head_from_folder"]

#: Bump when the exported graph changes for the same weights, so old cache files are unused.
EXPORT_FORMAT = 1


def head_weights_sha256(head: DPTDepthHead) -> str:
    """sha256 over the head's state dict (names, shapes and float32 values, in name order).

    Values are hashed as float32, the precision the head is exported in, so the hash names
    exactly the graph that an export of this head would produce.
    """
    h = hashlib.sha256(f"depthvlm-head/{EXPORT_FORMAT}".encode())
    for name, tensor in sorted(head.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_head_from_folder(folder: str | os.PathLike) -> DPTDepthHead:
    """Read only the ``depth_head.*`` tensors of a model folder into a float32 CPU head.

    Exporting needs the head alone; loading the whole VLM (8 GB and more for DepthVLM-4B)
    just to reach 100 MB of head weights would be wasteful.

    Raises:
        ExportError: no config.json / safetensors, or head tensors missing or mismatched.
    """
    from safetensors import safe_open

    from ..model import check_model_folder

    folder = Path(folder)
    try:
        # The same checks as loading the whole model: config.json is a qwen3_vl JSON object,
        # weights are safetensors (pickles refused) and their headers are intact.
        check_model_folder(folder)
    except ModelLoadError as exc:
        raise ExportError(str(exc)) from None
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {folder / 'config.json'}: {exc}") from None
    try:
        head = DPTDepthHead.from_config(cfg)
    except ConfigError as exc:
        raise ExportError(f"{folder / 'config.json'}: {exc}") from None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{folder} has no .safetensors files")
    state = {}
    try:
        for path in files:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    if key.startswith("depth_head."):
                        state[key[len("depth_head."):]] = f.get_tensor(key).float()
        result = head.load_state_dict(state, strict=False)
    except Exception as exc:  # noqa: BLE001 - corrupt tensors or shapes: one clear line
        text = str(exc).splitlines()[0] if str(exc) else ""
        if "size mismatch" in str(exc):
            text = "weight shapes do not match config.json (config of another model size?)"
        raise ExportError(f"{folder}: cannot load the depth head weights: "
                          f"{type(exc).__name__}: {text}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ExportError(f"{folder}: depth head weights do not match the config "
                          f"(missing {result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]})")
    return head.eval()
