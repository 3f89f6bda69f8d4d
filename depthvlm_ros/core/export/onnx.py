"""ONNX export of the depth head, and the cached export with its manifest.

This module shares its name with the ``onnx`` library; absolute imports (the only kind
Python 3 has) make ``import onnx`` below load that library, not this file.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..camera import TOKEN_PIXELS
from ..depth_head import DPTDepthHead
from ..errors import ExportError
from .cache import atomic_write, file_sha256
from .interface import DEFAULT_OPSET, HEAD_INPUTS, HEAD_OUTPUT, head_dims, head_of, logger, say
from .weights import head_weights_sha256

__all__ = ["ONNX_MANIFEST_FORMAT", "ExportableHead", "export_head_onnx", "cached_head_onnx",
           "manifest_token_pixels"]

ONNX_MANIFEST_FORMAT = "depthvlm-head-onnx/1"


def manifest_token_pixels(manifest: dict[str, Any]) -> int:
    """The token size an export's manifest records; 32 for manifests written before it was.

    Every export made before the key existed was of a Qwen3-VL geometry model (32 pixels).
    """
    return int(manifest.get("token_pixels", TOKEN_PIXELS))


class ExportableHead(nn.Module):
    """The DPT head with ``out_hw`` read from a tensor, so the output size stays dynamic.

    :meth:`DPTDepthHead.forward` turns ``out_hw`` into Python ints, which the exporter would
    freeze into the graph as constants. This wrapper calls the head's own ``fuse`` and
    ``decode`` but reads the size with ``.item()`` (a symbolic value under ``torch.export``),
    which becomes the ``sizes`` input of the ONNX ``Resize``.
    """

    def __init__(self, head: DPTDepthHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, ds0: torch.Tensor, ds1: torch.Tensor, ds2: torch.Tensor,
                llm: torch.Tensor, out_hw: torch.Tensor) -> torch.Tensor:
        fused = self.head.fuse(ds0, ds1, ds2, llm)
        out_h = out_hw[0].item()
        out_w = out_hw[1].item()
        # torch.export needs these facts about the data-dependent sizes; > 1 because
        # align-corners interpolation divides by (size - 1).
        torch._check(out_h >= 2)
        torch._check(out_w >= 2)
        return self.head.decode(fused, out_h, out_w)


def export_head_onnx(model_or_head: nn.Module, path: str | os.PathLike, opset: int = DEFAULT_OPSET,
                     progress: Callable[[str], None] | None = None,
                     check: bool = True) -> dict[str, Any]:
    """Export the depth head to one self-contained ONNX file (float32, dynamic sizes).

    The head is copied to float32 on the CPU first, so exporting never touches the live
    model's device or dtype. The file is written next to its destination and renamed into
    place, so an interrupted export never leaves a half-written file under the final name.

    Args:
        model_or_head: a DepthVLM model or its ``DPTDepthHead``.
        path: destination ``.onnx`` file.
        opset: ONNX opset (18 or newer).
        progress: called with a short message at each step.
        check: run ``onnx.checker`` (full check, with shape inference) on the result.

    Returns:
        A manifest dict (sha256, size, opset, interface, head dims, the model's token size,
        versions).

    Raises:
        ExportError: the exporter or the checker failed.
    """
    try:
        import onnx
        import onnxscript  # noqa: F401 - torch's exporter needs it; fail with a clear line
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({exc})") from None

    head = copy.deepcopy(head_of(model_or_head)).to("cpu", torch.float32).eval()
    dims = head_dims(head)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c = dims["dim_in"]
    # Sample sizes > 1 on every dynamic axis: torch.export specialises axes of size 0 or 1.
    sample = tuple(torch.randn(2, 3, 5, c) for _ in range(4)) + (torch.tensor([96, 160]),)
    batch = torch.export.Dim("batch", min=1, max=64)
    gh = torch.export.Dim("gh", min=1, max=4096)
    gw = torch.export.Dim("gw", min=1, max=4096)
    grid_axes = {0: batch, 1: gh, 2: gw}
    dynamic = (grid_axes, grid_axes, grid_axes, grid_axes, None)
    say(progress, f"exporting depth head to ONNX (opset {opset}, dim_in {c}, "
                  f"features {dims['features']}, channels {dims['out_channels']})")
    t0 = time.perf_counter()
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", prefix=".tmp-", dir=str(path.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter chatter; failures still raise
            torch.onnx.export(ExportableHead(head), sample, str(tmp), dynamo=True,
                              dynamic_shapes=dynamic, input_names=list(HEAD_INPUTS),
                              output_names=[HEAD_OUTPUT], opset_version=opset,
                              external_data=False, verbose=False)
        say(progress, f"exported in {time.perf_counter() - t0:.1f} s; checking the graph")
        if check:
            onnx.checker.check_model(str(tmp), full_check=True)
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - exporter errors are many types; one clear line
        raise ExportError(f"ONNX export of the depth head failed: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
        stray = Path(str(tmp) + ".data")
        if stray.exists():
            stray.unlink()
    manifest = {
        "format": ONNX_MANIFEST_FORMAT,
        "onnx_file": path.name,
        "onnx_sha256": file_sha256(path),
        "onnx_bytes": path.stat().st_size,
        "opset": int(opset),
        "head_weights_sha256": head_weights_sha256(head),
        "dims": dims,
        # The graph takes any output size; the token size says which model's images
        # (token_pixels * grid) it was exported for, so another geometry never reuses it.
        "token_pixels": int(head.token_pixels),
        "inputs": {
            **{n: {"dtype": "float32", "shape": ["batch", "gh", "gw", c]} for n in HEAD_INPUTS[:4]},
            "out_hw": {"dtype": "int64", "shape": [2], "meaning": "output height, width (>= 2)"},
        },
        "outputs": {HEAD_OUTPUT: {"dtype": "float32", "shape": ["batch", "out_h", "out_w"],
                                  "unit": "metres"}},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    say(progress, f"wrote {path} ({manifest['onnx_bytes'] / 1e6:.1f} MB, "
                  f"sha256 {manifest['onnx_sha256'][:12]})")
    return manifest


def cached_head_onnx(model_or_head: nn.Module, cache_dir: str | os.PathLike,
                     opset: int = DEFAULT_OPSET,
                     progress: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """The head's ONNX file in the cache, exported on demand and reused while valid.

    The file name carries the head weights' hash, so different checkpoints never share a
    file. A cached file is reused only when its sidecar JSON records the same size and
    sha256 as the bytes on disk and the head's token size; anything else (truncated copy, edited file, missing sidecar)
    triggers a fresh export.

    Returns:
        The ONNX path and its manifest.
    """
    head = head_of(model_or_head)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    weights = head_weights_sha256(head)
    stem = f"head-{weights[:16]}-op{opset}"
    onnx_path, side = cache_dir / f"{stem}.onnx", cache_dir / f"{stem}.json"
    if onnx_path.is_file() and side.is_file():
        try:
            manifest = json.loads(side.read_text())
            if (manifest.get("head_weights_sha256") == weights
                    and manifest_token_pixels(manifest) == head.token_pixels
                    and manifest.get("onnx_bytes") == onnx_path.stat().st_size
                    and manifest.get("onnx_sha256") == file_sha256(onnx_path)):
                logger.info("reusing cached ONNX head %s", onnx_path)
                return onnx_path, manifest
            logger.warning("cached ONNX head %s does not match its record; exporting again",
                           onnx_path)
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("unreadable ONNX cache record %s (%s); exporting again", side, exc)
    manifest = export_head_onnx(head, onnx_path, opset=opset, progress=progress)
    atomic_write(side, (json.dumps(manifest, indent=2) + "\n").encode())
    return onnx_path, manifest
