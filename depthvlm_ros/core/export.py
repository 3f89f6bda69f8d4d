"""Depth-head export (ONNX, TensorRT), head runtimes and a self-checking engine cache.

The DPT head is the only part of DepthVLM that is exported. It is a plain convolutional
decoder whose input sizes follow the token grid, so one ONNX graph with dynamic
``(batch, gh, gw)`` and a dynamic output size serves every image. The vision tower is not
exported: Qwen3-VL's tower builds its rotary table and its interpolated position embeddings
from ``image_grid_thw`` with Python loops and ``.tolist()``, and packs images into one
variable-length sequence (``cu_seqlens``); exporting that with a dynamic grid would mean
rewriting stock ``transformers`` code, which this package promises not to copy.

Graph interface (names are fixed; TensorRT profiles and I/O binding use them):

* ``ds0``, ``ds1``, ``ds2``, ``llm``: float32 ``(batch, gh, gw, C)`` token grids;
* ``out_hw``: int64 ``(2,)`` output height and width in pixels (each at least 2, because
  align-corners resizing is undefined for a one-pixel axis);
* ``depth``: float32 ``(batch, out_h, out_w)`` metres.

Runtimes are callables with the torch head's signature ``(ds0, ds1, ds2, llm, out_hw) ->
depth`` returning a float32 tensor on the inputs' device. :func:`select_head_runtime` picks
one for ``DepthVLMConfig.head_backend``; ``auto`` tries TensorRT, then ONNX Runtime, then the
torch head, and logs (logger ``depthvlm_ros.export``) why each skipped backend was skipped.
Every non-torch runtime is compared with the torch head on random features before it is
used, so a broken export or engine cannot silently change the depth.

Cache layout (``engine_cache_dir``, default ``~/.cache/depthvlm_ros``)::

    head-<weights sha256[:16]>-op<opset>.onnx       the exported head
    head-<weights sha256[:16]>-op<opset>.json       its sha256 and size (checked on reuse)
    trt-<engine key digest[:20]>.engine             a serialized TensorRT engine
    trt-<engine key digest[:20]>.json               the full engine key + engine sha256/size

An engine is reused only when its key file matches the current key (GPU name and compute
capability, TensorRT version, ONNX sha256, precision, profile) and the engine file has the
recorded size and sha256; otherwise, or when TensorRT cannot deserialize it, it is rebuilt.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .depth_head import DPTDepthHead
from .errors import ExportError

__all__ = [
    "HEAD_INPUTS",
    "HEAD_OUTPUT",
    "DEFAULT_OPSET",
    "BACKENDS",
    "logger",
    "ExportableHead",
    "TrtProfile",
    "EngineKey",
    "OnnxRuntimeHead",
    "TensorRTHead",
    "head_of",
    "head_dims",
    "head_weights_sha256",
    "file_sha256",
    "load_head_from_folder",
    "export_head_onnx",
    "default_cache_dir",
    "cached_head_onnx",
    "default_profile",
    "current_engine_key",
    "engine_paths",
    "write_engine",
    "check_engine_file",
    "build_tensorrt_engine",
    "load_or_build_engine",
    "tensorrt_unavailable_reason",
    "onnxruntime_unavailable_reason",
    "make_head_runtime",
    "verify_runtime",
    "select_head_runtime",
    "canonical_grid",
    "benchmark_head_backends",
    "format_benchmark",
]

logger = logging.getLogger("depthvlm_ros.export")

HEAD_INPUTS = ("ds0", "ds1", "ds2", "llm", "out_hw")
HEAD_OUTPUT = "depth"
#: Opset 18 is the lowest the torch.export-based exporter emits without down-conversion.
DEFAULT_OPSET = 18
BACKENDS = ("tensorrt", "onnxruntime", "torch")
#: Bump when the exported graph changes for the same weights, so old cache files are unused.
_EXPORT_FORMAT = 1
_ONNX_MANIFEST_FORMAT = "depthvlm-head-onnx/1"
_ENGINE_FORMAT = "depthvlm-trt-engine/1"


# --------------------------------------------------------------------------------------------
# The exportable head
# --------------------------------------------------------------------------------------------
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


def head_of(model_or_head: nn.Module) -> DPTDepthHead:
    """The DPT head of a DepthVLM model (``.depth_head``), or the head itself."""
    head = getattr(model_or_head, "depth_head", model_or_head)
    if not isinstance(head, DPTDepthHead):
        raise ExportError(f"expected a DepthVLM model or a DPTDepthHead, got {type(model_or_head).__name__}")
    return head


def head_dims(head: DPTDepthHead) -> dict[str, Any]:
    """Channel sizes of a head (input width, fusion features, pyramid channels)."""
    return {"dim_in": int(head.norm.normalized_shape[0]),
            "features": int(head.scratch.output_conv1.in_channels),
            "out_channels": [int(p.out_channels) for p in head.projects]}


def head_weights_sha256(head: DPTDepthHead) -> str:
    """sha256 over the head's state dict (names, shapes and float32 values, in name order).

    Values are hashed as float32, the precision the head is exported in, so the hash names
    exactly the graph that an export of this head would produce.
    """
    h = hashlib.sha256(f"depthvlm-head/{_EXPORT_FORMAT}".encode())
    for name, tensor in sorted(head.state_dict().items()):
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_head_from_folder(folder: str | os.PathLike) -> DPTDepthHead:
    """Read only the ``depth_head.*`` tensors of a model folder into a float32 CPU head.

    Exporting needs the head alone; loading the whole VLM (8 GB and more for DepthVLM-4B)
    just to reach 100 MB of head weights would be wasteful.

    Raises:
        ExportError: no config.json / safetensors, or head tensors missing or mismatched.
    """
    from safetensors import safe_open

    from .errors import ModelLoadError
    from .model import check_model_folder

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
    text = cfg.get("text_config") or {}
    dim_in = int(text.get("hidden_size") or cfg.get("hidden_size") or 0)
    if not dim_in:
        raise ExportError(f"{folder / 'config.json'} has no text_config.hidden_size")
    kwargs = {}
    if "depth_head_features" in cfg:
        kwargs["features"] = int(cfg["depth_head_features"])
    if "depth_head_out_channels" in cfg:
        kwargs["out_channels"] = tuple(cfg["depth_head_out_channels"])
    head = DPTDepthHead(dim_in, **kwargs)
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


# --------------------------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------------------------
def _say(progress: Callable[[str], None] | None, message: str) -> None:
    logger.info(message)
    if progress is not None:
        progress(message)


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
        A manifest dict (sha256, size, opset, interface, head dims, versions).

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
    _say(progress, f"exporting depth head to ONNX (opset {opset}, dim_in {c}, "
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
        _say(progress, f"exported in {time.perf_counter() - t0:.1f} s; checking the graph")
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
        "format": _ONNX_MANIFEST_FORMAT,
        "onnx_file": path.name,
        "onnx_sha256": file_sha256(path),
        "onnx_bytes": path.stat().st_size,
        "opset": int(opset),
        "head_weights_sha256": head_weights_sha256(head),
        "dims": dims,
        "inputs": {
            **{n: {"dtype": "float32", "shape": ["batch", "gh", "gw", c]} for n in HEAD_INPUTS[:4]},
            "out_hw": {"dtype": "int64", "shape": [2], "meaning": "output height, width (>= 2)"},
        },
        "outputs": {HEAD_OUTPUT: {"dtype": "float32", "shape": ["batch", "out_h", "out_w"],
                                  "unit": "metres"}},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _say(progress, f"wrote {path} ({manifest['onnx_bytes'] / 1e6:.1f} MB, "
                   f"sha256 {manifest['onnx_sha256'][:12]})")
    return manifest


def default_cache_dir(config=None) -> Path:
    """``config.engine_cache_dir`` when set, else ``~/.cache/depthvlm_ros`` (created)."""
    raw = getattr(config, "engine_cache_dir", "") if config is not None else ""
    path = Path(os.path.expanduser(raw)) if raw else Path.home() / ".cache" / "depthvlm_ros"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the engine cache folder {path}: {exc}") from None
    return path


def cached_head_onnx(model_or_head: nn.Module, cache_dir: str | os.PathLike,
                     opset: int = DEFAULT_OPSET,
                     progress: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:
    """The head's ONNX file in the cache, exported on demand and reused while valid.

    The file name carries the head weights' hash, so different checkpoints never share a
    file. A cached file is reused only when its sidecar JSON records the same size and
    sha256 as the bytes on disk; anything else (truncated copy, edited file, missing sidecar)
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
                    and manifest.get("onnx_bytes") == onnx_path.stat().st_size
                    and manifest.get("onnx_sha256") == file_sha256(onnx_path)):
                logger.info("reusing cached ONNX head %s", onnx_path)
                return onnx_path, manifest
            logger.warning("cached ONNX head %s does not match its record; exporting again",
                           onnx_path)
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("unreadable ONNX cache record %s (%s); exporting again", side, exc)
    manifest = export_head_onnx(head, onnx_path, opset=opset, progress=progress)
    _atomic_write(side, (json.dumps(manifest, indent=2) + "\n").encode())
    return onnx_path, manifest


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------
def onnxruntime_unavailable_reason(device: torch.device | None = None) -> str | None:
    """None when ONNX Runtime can serve a head on ``device``; else why not."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    if device is not None and device.type == "cuda" and \
            "CUDAExecutionProvider" not in ort.get_available_providers():
        return ("the model is on CUDA but onnxruntime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu); copying features to the CPU would be slower than "
                "the torch head")
    return None


class OnnxRuntimeHead:
    """Run the exported head with ONNX Runtime; a drop-in for ``DPTDepthHead.__call__``.

    On a CUDA model with onnxruntime-gpu, inputs and output stay on the GPU (I/O binding on
    torch's buffers); otherwise features are copied to the CPU and the depth copied back to
    the inputs' device.

    Args:
        onnx_path: the exported head.
        device: where the model's features live.
        threads: intra-op threads for the CPU provider (0: ONNX Runtime's default).
    """

    def __init__(self, onnx_path: str | os.PathLike, device: torch.device | str = "cpu",
                 threads: int = 0) -> None:
        import onnxruntime as ort

        self.device = torch.device(device)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3  # errors only: provider fallback notes are logged by us
        available = ort.get_available_providers()
        self.on_gpu = self.device.type == "cuda" and "CUDAExecutionProvider" in available
        if self.on_gpu:
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}),
                         "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda":
                logger.warning("onnxruntime has no CUDAExecutionProvider: the head runs on the "
                               "CPU with copies to and from %s", self.device)
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                                providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ExportError(f"onnxruntime cannot load {onnx_path}: {exc}") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != list(HEAD_INPUTS):
            raise ExportError(f"{onnx_path} has inputs {names}, expected {list(HEAD_INPUTS)}")
        self.providers = self.session.get_providers()

    def __call__(self, ds0: torch.Tensor, ds1: torch.Tensor, ds2: torch.Tensor,
                 llm: torch.Tensor, out_hw: torch.Tensor | Sequence[int]) -> torch.Tensor:
        out_h, out_w = (int(v) for v in out_hw)
        grids = (ds0, ds1, ds2, llm)
        if self.on_gpu and ds0.is_cuda:
            return self._run_cuda(grids, out_h, out_w)
        feeds = {n: g.detach().to("cpu", torch.float32).contiguous().numpy()
                 for n, g in zip(HEAD_INPUTS, grids)}
        feeds["out_hw"] = np.array([out_h, out_w], dtype=np.int64)
        out = self.session.run([HEAD_OUTPUT], feeds)[0]
        return torch.from_numpy(out).to(ds0.device)

    def _run_cuda(self, grids, out_h: int, out_w: int) -> torch.Tensor:
        dev = grids[0].device
        inputs = [g.detach().to(dev, torch.float32).contiguous() for g in grids]
        out = torch.empty((inputs[0].shape[0], out_h, out_w), device=dev, dtype=torch.float32)
        binding = self.session.io_binding()
        for name, t in zip(HEAD_INPUTS, inputs):
            binding.bind_input(name, "cuda", dev.index or 0, np.float32, tuple(t.shape),
                               t.data_ptr())
        binding.bind_cpu_input("out_hw", np.array([out_h, out_w], dtype=np.int64))
        binding.bind_output(HEAD_OUTPUT, "cuda", dev.index or 0, np.float32, tuple(out.shape),
                            out.data_ptr())
        # ORT runs on its own CUDA stream: wait for torch's pending writes to the inputs,
        # and wait for ORT before torch reads the output.
        torch.cuda.current_stream(dev).synchronize()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out


# --------------------------------------------------------------------------------------------
# TensorRT: engine key, cache files, build, runtime
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtProfile:
    """The optimization profile of an engine: token grid and output size ranges.

    Output sizes are covered as ``32 * grid`` at min/opt/max (the pipeline's sizes); calls
    outside the profile fall back to the torch head.
    """

    min_grid: tuple[int, int] = (1, 1)
    opt_grid: tuple[int, int] = (30, 40)
    max_grid: tuple[int, int] = (64, 64)
    max_batch: int = 1
    out_min: tuple[int, int] = (32, 32)
    out_max: tuple[int, int] = (2048, 2048)

    def contains(self, batch: int, grid: tuple[int, int], out_hw: tuple[int, int]) -> bool:
        """Whether a call with these sizes is inside the profile."""
        return (1 <= batch <= self.max_batch
                and all(lo <= g <= hi for lo, g, hi in zip(self.min_grid, grid, self.max_grid))
                and all(lo <= o <= hi for lo, o, hi in zip(self.out_min, out_hw, self.out_max)))

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def default_profile(max_image_tokens: int = 1280) -> TrtProfile:
    """A profile covering every grid up to ``max_image_tokens`` with a side of at most 64.

    The opt grid is that of a 640x480 image from a camera with fx = fy = 500 at canonical
    focal 1000 (30 x 40 tokens), shrunk to the token budget if needed.
    """
    side = max(1, min(64, int(max_image_tokens)))
    opt = canonical_grid(max_tokens=max_image_tokens)
    opt = (min(opt[0], side), min(opt[1], side))
    return TrtProfile(min_grid=(1, 1), opt_grid=opt, max_grid=(side, side), max_batch=1,
                      out_min=(32, 32), out_max=(32 * side, 32 * side))


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on; engines are reused only on an exact match."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    onnx_sha256: str
    precision: str
    profile: dict

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """sha256 of the key's canonical JSON (sorted keys, no whitespace)."""
        text = json.dumps({"format": _ENGINE_FORMAT, **self.as_dict()}, sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def current_engine_key(onnx_sha256: str, precision: str, profile: TrtProfile,
                       device: torch.device | None = None) -> EngineKey:
    """The engine key for this machine's GPU and TensorRT (both must be present)."""
    import tensorrt as trt

    dev = device if device is not None else torch.device("cuda", torch.cuda.current_device())
    major, minor = torch.cuda.get_device_capability(dev)
    return EngineKey(torch.cuda.get_device_name(dev), f"{major}.{minor}", trt.__version__,
                     onnx_sha256, precision, profile.as_dict())


def engine_paths(cache_dir: str | os.PathLike, key: EngineKey) -> tuple[Path, Path]:
    """(engine file, key file) for ``key`` in ``cache_dir``."""
    stem = f"trt-{key.digest()[:20]}"
    return Path(cache_dir) / f"{stem}.engine", Path(cache_dir) / f"{stem}.json"


def write_engine(cache_dir: str | os.PathLike, key: EngineKey, blob: bytes) -> Path:
    """Store a serialized engine with its key file (engine first, record last, both atomic)."""
    engine, record = engine_paths(cache_dir, key)
    engine.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(engine, bytes(blob))
    info = {"format": _ENGINE_FORMAT, "key": key.as_dict(), "key_digest": key.digest(),
            "engine_file": engine.name, "engine_bytes": len(blob),
            "engine_sha256": hashlib.sha256(bytes(blob)).hexdigest(),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _atomic_write(record, (json.dumps(info, indent=2) + "\n").encode())
    return engine


def check_engine_file(cache_dir: str | os.PathLike, key: EngineKey) -> tuple[bytes | None, str]:
    """Read a cached engine if, and only if, it is the engine for ``key`` and intact.

    Returns:
        ``(engine bytes, "ok")``, or ``(None, reason)`` when the engine is missing, has no or
        an unreadable key file, was built for another key (stale), or its size or sha256
        differ from the record (corrupt or truncated).
    """
    engine, record = engine_paths(cache_dir, key)
    if not engine.is_file():
        return None, "no cached engine"
    if not record.is_file():
        return None, f"key file {record.name} is missing"
    try:
        info = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"key file {record.name} is unreadable ({exc})"
    if info.get("format") != _ENGINE_FORMAT:
        return None, f"key file format {info.get('format')!r} is not {_ENGINE_FORMAT!r}"
    if info.get("key") != key.as_dict() or info.get("key_digest") != key.digest():
        stored = info.get("key") or {}
        changed = sorted(k for k in key.as_dict() if stored.get(k) != key.as_dict()[k])
        return None, f"stale engine: key differs in {', '.join(changed) or 'digest'}"
    blob = engine.read_bytes()
    if len(blob) != info.get("engine_bytes"):
        return None, f"engine size {len(blob)} differs from the recorded {info.get('engine_bytes')}"
    if hashlib.sha256(blob).hexdigest() != info.get("engine_sha256"):
        return None, "engine sha256 differs from the record (corrupt file)"
    return blob, "ok"


def tensorrt_unavailable_reason(device: torch.device | None = None) -> str | None:
    """None when TensorRT can build and run engines for ``device``; else why not."""
    if device is not None and device.type != "cuda":
        return f"the model is on {device.type}, TensorRT needs a CUDA device"
    if not torch.cuda.is_available():
        return "CUDA is not available to torch"
    try:
        import tensorrt as trt
    except ImportError as exc:
        return f"the tensorrt Python package is not installed ({exc})"
    if not hasattr(trt, "Builder") or not hasattr(trt, "OnnxParser"):
        return "the installed tensorrt has no builder/ONNX parser (lean or dispatch runtime only)"
    return None


class _TrtLogger:
    """A TensorRT logger that forwards to ``depthvlm_ros.export`` (created lazily)."""

    def __new__(cls):
        import tensorrt as trt

        class Forward(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity, msg) -> None:
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    logger.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.WARNING:
                    logger.warning("TensorRT: %s", msg)
                else:
                    logger.debug("TensorRT: %s", msg)

        return Forward()


def _keep_normalization_in_fp32(trt, network) -> int:
    """Compute the head's LayerNorm in fp32 inside an FP16 engine; returns how many layers.

    The head normalises the LLM's last hidden state (2560 wide for the 4B model), whose
    squared values can leave FP16's range while the statistics are accumulated. Opset 17+
    exports it as one INormalizationLayer, whose compute precision can be pinned without
    forcing its neighbours (the convolutions) out of FP16.
    """
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer  # the Python API's documented downcast
            layer.compute_precision = trt.float32
            pinned += 1
    return pinned


def build_tensorrt_engine(onnx_path: str | os.PathLike, profile: TrtProfile, dim_in: int,
                          fp16: bool = False, workspace_bytes: int = 2 << 30,
                          progress: Callable[[str], None] | None = None) -> bytes:
    """Build a serialized TensorRT engine from the exported head.

    Raises:
        ExportError: TensorRT missing, the parser rejected the graph, or the build failed.
    """
    reason = tensorrt_unavailable_reason()
    if reason:
        raise ExportError(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt

    trt_logger = _TrtLogger()
    builder = trt.Builder(trt_logger)
    flags = 0
    # Explicit batch is the only mode in TensorRT 10 (the flag is deprecated there); older
    # releases need it set.
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and \
            int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    _say(progress, f"TensorRT {trt.__version__}: parsing {onnx_path}")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if not fp16 and hasattr(trt.BuilderFlag, "TF32"):
        # TF32 is on by default and would make an "fp32" engine miss the 1e-4 agreement.
        config.clear_flag(trt.BuilderFlag.TF32)
    if fp16:
        if not builder.platform_has_fast_fp16:
            logger.warning("this GPU has no fast FP16; building with FP16 allowed anyway")
        config.set_flag(trt.BuilderFlag.FP16)
        _keep_normalization_in_fp32(trt, network)
    opt_profile = builder.create_optimization_profile()
    p = profile
    for name in HEAD_INPUTS[:4]:
        opt_profile.set_shape(name, (1, *p.min_grid, dim_in), (1, *p.opt_grid, dim_in),
                              (p.max_batch, *p.max_grid, dim_in))
    # out_hw is a shape tensor (it sets the Resize output size): its profile is over values.
    opt_profile.set_shape_input("out_hw", list(p.out_min),
                                [32 * p.opt_grid[0], 32 * p.opt_grid[1]], list(p.out_max))
    config.add_optimization_profile(opt_profile)
    _say(progress, f"building the TensorRT engine ({'fp16' if fp16 else 'fp32'}, grid "
                   f"{p.min_grid}..{p.max_grid}, opt {p.opt_grid}); this takes minutes")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT errors logged)")
    _say(progress, f"engine built in {time.perf_counter() - t0:.0f} s ({serialized.nbytes / 1e6:.1f} MB)")
    return bytes(serialized)


class TensorRTHead:
    """Run a TensorRT engine of the head on torch CUDA tensors (no extra copies).

    Inputs are bound by ``data_ptr()`` and the engine is enqueued on torch's current stream,
    so it is ordered with the surrounding torch work like any torch op. Calls outside the
    engine's profile run the torch head instead (logged once).

    Args:
        engine_bytes: a serialized engine.
        profile: the profile it was built with.
        fallback: the torch head for out-of-profile calls.
        device: the CUDA device of the features.

    Raises:
        ExportError: the engine cannot be deserialized (corrupt, or from another TensorRT/GPU).
    """

    def __init__(self, engine_bytes: bytes, profile: TrtProfile, fallback: Callable,
                 device: torch.device) -> None:
        import tensorrt as trt

        self._trt = trt
        self.profile = profile
        self.fallback = fallback
        self.device = device
        self._logger = _TrtLogger()
        self.runtime = trt.Runtime(self._logger)
        with torch.cuda.device(device):
            self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise ExportError("TensorRT could not deserialize the engine")
            self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ExportError("TensorRT could not create an execution context")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != sorted(list(HEAD_INPUTS) + [HEAD_OUTPUT]):
            raise ExportError(f"engine tensors {names} are not the head's")
        self._in_dtype = self._torch_dtype(self.engine.get_tensor_dtype("ds0"))
        self._out_dtype = self._torch_dtype(self.engine.get_tensor_dtype(HEAD_OUTPUT))
        self._hw_dtype = self._torch_dtype(self.engine.get_tensor_dtype("out_hw"))
        # out_hw feeds shape computation, so TensorRT reads it from host memory.
        self._hw_on_host = bool(self.engine.is_shape_inference_io("out_hw"))
        self._warned = False

    def _torch_dtype(self, dt) -> torch.dtype:
        trt = self._trt
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                 trt.DataType.INT32: torch.int32}
        if hasattr(trt.DataType, "INT64"):
            table[trt.DataType.INT64] = torch.int64
        if dt not in table:
            raise ExportError(f"unsupported engine tensor type {dt}")
        return table[dt]

    def __call__(self, ds0: torch.Tensor, ds1: torch.Tensor, ds2: torch.Tensor,
                 llm: torch.Tensor, out_hw: torch.Tensor | Sequence[int]) -> torch.Tensor:
        out_h, out_w = (int(v) for v in out_hw)
        batch, gh, gw = ds0.shape[:3]
        if not ds0.is_cuda or not self.profile.contains(batch, (gh, gw), (out_h, out_w)):
            if not self._warned:
                logger.warning("TensorRT engine profile %s does not cover batch %d, grid %dx%d, "
                               "output %dx%d: using the torch head for such calls",
                               self.profile.as_dict(), batch, gh, gw, out_h, out_w)
                self._warned = True
            return self.fallback(ds0, ds1, ds2, llm, (out_h, out_w)).float()
        ctx = self.context
        keep = []  # tensors must outlive the enqueue
        for name, t in zip(HEAD_INPUTS, (ds0, ds1, ds2, llm)):
            t = t.detach().to(self._in_dtype).contiguous()
            keep.append(t)
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        hw = torch.tensor([out_h, out_w], dtype=self._hw_dtype,
                          device="cpu" if self._hw_on_host else ds0.device)
        keep.append(hw)
        ctx.set_tensor_address("out_hw", hw.data_ptr())
        missing = ctx.infer_shapes()
        if missing:
            raise ExportError(f"TensorRT cannot infer output shapes; missing inputs {missing}")
        shape = tuple(ctx.get_tensor_shape(HEAD_OUTPUT))
        out = torch.empty(shape, dtype=self._out_dtype, device=ds0.device)
        ctx.set_tensor_address(HEAD_OUTPUT, out.data_ptr())
        stream = torch.cuda.current_stream(ds0.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT execution failed")
        # `keep` holds the inputs until here; the host copy of out_hw was read at enqueue.
        return out.float()


def load_or_build_engine(onnx_path: str | os.PathLike, onnx_sha256: str, cache_dir: str | os.PathLike,
                         fallback: Callable, device: torch.device, dim_in: int,
                         fp16: bool = False, profile: TrtProfile | None = None,
                         progress: Callable[[str], None] | None = None) -> TensorRTHead:
    """A ready :class:`TensorRTHead`: from the cache when valid, otherwise freshly built.

    A cached engine that fails the key/size/sha256 check, or that TensorRT cannot
    deserialize, is deleted and rebuilt (logged with the reason).
    """
    profile = profile or default_profile()
    key = current_engine_key(onnx_sha256, "fp16" if fp16 else "fp32", profile, device)
    blob, why = check_engine_file(cache_dir, key)
    if blob is not None:
        try:
            head = TensorRTHead(blob, profile, fallback, device)
            logger.info("reusing TensorRT engine %s", engine_paths(cache_dir, key)[0])
            return head
        except ExportError as exc:
            why = f"cached engine failed to load ({exc})"
    if why != "no cached engine":
        logger.warning("rebuilding the TensorRT engine: %s", why)
        for path in engine_paths(cache_dir, key):
            path.unlink(missing_ok=True)
    blob = build_tensorrt_engine(onnx_path, profile, dim_in, fp16=fp16, progress=progress)
    write_engine(cache_dir, key, blob)
    return TensorRTHead(blob, profile, fallback, device)


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------
def _device_dtype(model_or_head: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(head_of(model_or_head).parameters())
    return p.device, p.dtype


def verify_runtime(runtime: Callable, model_or_head: nn.Module, grid: tuple[int, int] = (3, 4),
                   out_hw: tuple[int, int] | None = None, tol: float | None = None,
                   seed: int = 0) -> float:
    """Compare a head runtime with the torch head on random features.

    The reference is the head in float32 (a float32 copy when the model runs in bf16/fp16),
    fed the same features the runtime gets, so the check measures the export or engine and
    not the model's own rounding.

    Args:
        runtime: the candidate callable.
        model_or_head: the model whose head it replaces.
        grid: token grid of the probe.
        out_hw: output size (default ``32 * grid``).
        tol: largest allowed ``max|a - b| / (1 + max|b|)`` (default 1e-4: float32 agreement;
            pass about 2e-2 for an FP16 engine).
        seed: seed of the random features.

    Returns:
        The relative error found.

    Raises:
        ExportError: the error exceeds ``tol`` or the output shape is wrong.
    """
    head = head_of(model_or_head)
    device, dtype = _device_dtype(head)
    out_hw = out_hw or (32 * grid[0], 32 * grid[1])
    gen = torch.Generator().manual_seed(seed)
    c = head_dims(head)["dim_in"]
    feats = [torch.randn(1, *grid, c, generator=gen).to(device, dtype) for _ in range(4)]
    reference = head if dtype == torch.float32 else copy.deepcopy(head).float()
    with torch.inference_mode():
        want = reference(*[f.float() for f in feats], out_hw).float()
        got = runtime(*feats, out_hw).float()
    del reference
    if tuple(got.shape) != tuple(want.shape):
        raise ExportError(f"runtime output shape {tuple(got.shape)} != torch {tuple(want.shape)}")
    err = float((got - want).abs().max() / (1.0 + want.abs().max()))
    if tol is None:
        tol = 1e-4
    if not math.isfinite(err) or err > tol:
        raise ExportError(f"runtime disagrees with the torch head: relative error {err:.2e} > {tol:.0e}")
    return err


def make_head_runtime(backend: str, model_or_head: nn.Module, cache_dir: str | os.PathLike,
                      fp16: bool = False, profile: TrtProfile | None = None,
                      progress: Callable[[str], None] | None = None) -> Callable:
    """Build the runtime of one backend (no fallback, no verification).

    Raises:
        ExportError: the backend is unavailable here or could not be prepared.
    """
    head = head_of(model_or_head)
    device, _ = _device_dtype(head)
    if backend == "torch":
        return head
    if backend == "onnxruntime":
        reason = onnxruntime_unavailable_reason()
        if reason:
            raise ExportError(reason)
        onnx_path, _ = cached_head_onnx(head, cache_dir, progress=progress)
        return OnnxRuntimeHead(onnx_path, device)
    if backend == "tensorrt":
        reason = tensorrt_unavailable_reason(device)
        if reason:
            raise ExportError(reason)
        onnx_path, manifest = cached_head_onnx(head, cache_dir, progress=progress)
        return load_or_build_engine(onnx_path, manifest["onnx_sha256"], cache_dir, head, device,
                                    head_dims(head)["dim_in"], fp16=fp16, profile=profile,
                                    progress=progress)
    raise ExportError(f"unknown head backend {backend!r}; use one of {', '.join(BACKENDS)}")


def select_head_runtime(model: nn.Module, config, folder: str | os.PathLike | None = None
                        ) -> tuple[Callable, str]:
    """The head runtime for ``config.head_backend``, as ``(callable, backend name)``.

    ``auto`` tries TensorRT, then ONNX Runtime, then torch, and logs which one runs and why
    the others were skipped. A backend named explicitly must work: if it cannot be prepared
    or fails the comparison with the torch head, :class:`ExportError` says why. TensorRT
    engines are built in FP16 when the model itself runs in reduced precision.

    Args:
        model: the loaded DepthVLM (its ``depth_head`` is exported).
        config: a ``DepthVLMConfig`` (``head_backend``, ``engine_cache_dir``,
            ``max_image_tokens``).
        folder: the model folder (only used in log messages).
    """
    requested = getattr(config, "head_backend", "auto")
    head = head_of(model)
    device, dtype = _device_dtype(head)
    if requested == "torch":
        return head, "torch"
    order = list(BACKENDS) if requested == "auto" else [requested]
    if requested not in ("auto",) + BACKENDS:
        raise ExportError(f"unknown head_backend {requested!r}")
    profile = default_profile(int(getattr(config, "max_image_tokens", 1280)))
    fp16 = dtype != torch.float32
    skipped: list[str] = []
    cache_dir = None
    for backend in order:
        if backend == "torch":
            break
        reason = (tensorrt_unavailable_reason(device) if backend == "tensorrt"
                  else onnxruntime_unavailable_reason(device if requested == "auto" else None))
        if reason is None:
            try:
                cache_dir = cache_dir or default_cache_dir(config)
                runtime = make_head_runtime(backend, head, cache_dir, fp16=fp16, profile=profile)
                # An fp32 engine may pick other conv algorithms than torch: allow 1e-3.
                tol = None if backend == "onnxruntime" else (2e-2 if fp16 else 1e-3)
                err = verify_runtime(runtime, head, tol=tol)
            except ExportError as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001 - a broken optional backend must not
                # stop the model from loading under auto; explicit requests still raise below.
                logger.debug("%s backend failed", backend, exc_info=True)
                reason = f"{type(exc).__name__}: {exc}"
            else:
                note = f"; skipped: {'; '.join(skipped)}" if skipped else ""
                logger.info("depth head runs on %s (matches torch, rel. error %.1e) for %s%s",
                            backend, err, folder or "the model", note)
                return runtime, backend
        if requested != "auto":
            raise ExportError(f"head_backend={requested} requested but unavailable: {reason}")
        skipped.append(f"{backend}: {reason}")
    logger.info("depth head runs on torch; skipped: %s", "; ".join(skipped) or "none")
    return head, "torch"


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------
def canonical_grid(width: int = 640, height: int = 480, fx: float = 500.0, fy: float | None = None,
                   canonical_fx: float = 1000.0, max_tokens: int = 1280) -> tuple[int, int]:
    """Token grid (gh, gw) the pipeline uses for an image, via ``plan_canonical_resize``.

    The default, a 640x480 image with fx = fy = 500 at canonical focal 1000, is resized to
    1280x960 and gives a 30 x 40 grid (1200 tokens, inside the default 1280 budget).
    """
    from .camera import Intrinsics, plan_canonical_resize

    fy = fx if fy is None else fy
    intr = Intrinsics(fx, fy, (width - 1) / 2.0, (height - 1) / 2.0, width, height)
    plan = plan_canonical_resize(intr, canonical_fx, max_tokens=max_tokens)
    return plan.grid_h, plan.grid_w


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_head_backends(model: nn.Module, grid: tuple[int, int] | None = None,
                            repeats: int = 20, warmup: int = 3,
                            backends: Iterable[str] = BACKENDS,
                            cache_dir: str | os.PathLike | None = None, fp16: bool | None = None,
                            seed: int = 0, print_table: bool = True) -> list[dict[str, Any]]:
    """Time the head on every available backend with the same features, in one run.

    Args:
        model: a DepthVLM model or a DPT head (on the device and dtype to measure).
        grid: token grid (gh, gw); default :func:`canonical_grid` (30 x 40: 640x480 image,
            fx = fy = 500, canonical focal 1000). Output size is ``32 * grid``.
        repeats: timed calls per backend (the median is reported).
        warmup: untimed calls first (engine/kernel selection, allocator warm-up).
        backends: backends to try; unavailable ones are reported with the reason.
        cache_dir: ONNX/engine cache (default ``~/.cache/depthvlm_ros``).
        fp16: TensorRT precision; default FP16 when the head is not float32.
        seed: seed of the random features.
        print_table: print :func:`format_benchmark` of the result.

    Returns:
        One row per backend: ``backend``, ``status`` (``ok`` or the reason it did not run),
        ``median_ms``, ``mean_ms``, ``min_ms``, ``speedup_vs_torch`` and ``max_abs_diff_vs_torch``.
    """
    head = head_of(model)
    device, dtype = _device_dtype(head)
    grid = tuple(grid) if grid else canonical_grid()
    out_hw = (32 * grid[0], 32 * grid[1])
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    fp16 = (dtype != torch.float32) if fp16 is None else fp16
    gen = torch.Generator().manual_seed(seed)
    c = head_dims(head)["dim_in"]
    feats = [torch.randn(1, *grid, c, generator=gen).to(device, dtype) for _ in range(4)]
    rows: list[dict[str, Any]] = []
    runtimes: dict[str, Callable] = {}
    ordered = sorted(set(backends), key=lambda b: (b != "torch", BACKENDS.index(b)))
    for backend in ordered:
        row: dict[str, Any] = {"backend": backend, "grid": list(grid), "out_hw": list(out_hw),
                               "device": str(device), "dtype": str(dtype).replace("torch.", "")}
        try:
            runtimes[backend] = make_head_runtime(backend, head, cache_dir, fp16=fp16,
                                                  profile=default_profile())
            row["status"] = "ok"
        except ExportError as exc:
            row["status"] = f"unavailable: {exc}"
        rows.append(row)
    # Backends take turns within each repeat, so a load spike from other processes hits all
    # of them alike and the ratios stay meaningful on a shared machine.
    times: dict[str, list[float]] = {b: [] for b in runtimes}
    outputs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for backend, runtime in runtimes.items():
                _sync(device)
                t0 = time.perf_counter()
                out = runtime(*feats, out_hw)
                _sync(device)
                if i >= warmup:
                    times[backend].append(time.perf_counter() - t0)
                outputs[backend] = out
    reference = outputs.get("torch")
    for row in rows:
        backend = row["backend"]
        if backend not in runtimes:
            continue
        times_ms = np.array(times[backend]) * 1e3
        row.update(median_ms=float(np.median(times_ms)), mean_ms=float(times_ms.mean()),
                   min_ms=float(times_ms.min()), repeats=repeats)
        if reference is not None:
            row["max_abs_diff_vs_torch"] = float(
                (outputs[backend].float() - reference.float()).abs().max())
    base = next((r for r in rows if r["backend"] == "torch" and r["status"] == "ok"), None)
    for r in rows:
        if base is not None and r["status"] == "ok":
            r["speedup_vs_torch"] = base["median_ms"] / r["median_ms"]
    if print_table:
        print(format_benchmark(rows))
    return rows


def format_benchmark(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`benchmark_head_backends` rows."""
    if not rows:
        return "(no backends)"
    first = rows[0]
    lines = [f"depth head latency, grid {first['grid'][0]}x{first['grid'][1]} -> "
             f"{first['out_hw'][0]}x{first['out_hw'][1]} px, {first['device']} {first['dtype']}",
             f"{'backend':<12} {'median ms':>10} {'min ms':>9} {'x torch':>8} {'max|diff|':>10}  status"]
    for r in rows:
        if r["status"] == "ok":
            lines.append(f"{r['backend']:<12} {r['median_ms']:>10.2f} {r['min_ms']:>9.2f} "
                         f"{r.get('speedup_vs_torch', float('nan')):>8.2f} "
                         f"{r.get('max_abs_diff_vs_torch', float('nan')):>10.2e}  ok")
        else:
            lines.append(f"{r['backend']:<12} {'-':>10} {'-':>9} {'-':>8} {'-':>10}  {r['status']}")
    return "\n".join(lines)
