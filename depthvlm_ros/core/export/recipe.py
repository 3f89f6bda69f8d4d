"""The ``depthvlm export`` recipe: export the head of a model folder, check it, time backends.

:func:`run_export` does everything the command does, in this order: check the request, read
the head alone from the model folder, write ``depth_head.onnx`` and check it with ONNX Runtime,
optionally build and check a TensorRT engine next to it, write ``manifest.json``, and with
``bench`` time every backend (``bench.json`` beside the manifest). Errors are
:class:`~depthvlm_ros.core.errors.ExportError`; the fields of :class:`ExportRequest` are the
command's options, and the errors name them as the command spells them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..depth_head import DPTDepthHead
from ..errors import ExportError
from .bench import benchmark_head_backends, format_benchmark
from .cache import current_engine_key, write_engine
from .interface import DEFAULT_OPSET, head_token_pixels
from .onnx import export_head_onnx
from .runtimes import OnnxRuntimeHead, verify_runtime
from .tensorrt import TensorRTHead, build_tensorrt_engine, default_profile, tensorrt_unavailable_reason
from .weights import load_head_from_folder

__all__ = ["ExportRequest", "ExportResult", "run_export"]

#: Token grid of the ONNX Runtime check of a fresh export.
_VERIFY_GRID = (3, 4)


@dataclass(frozen=True)
class ExportRequest:
    """What to export and measure (one field per ``depthvlm export`` option).

    Attributes:
        model: model folder or ``"embedded"``.
        out: output folder (``depth_head.onnx``, ``manifest.json``, engine); None: no export.
        opset: ONNX opset (18 or newer).
        tensorrt: also build a TensorRT engine into ``out``.
        fp16: build that engine in FP16.
        max_image_tokens: token budget the engine's profile must cover.
        bench: time the head on every available backend.
        grid: token grid of the benchmark (default: 640x480 image, fx = fy = 500).
        repeats: timed calls per backend.
        device: device of the benchmark (``cpu``, ``cuda``, ``cuda:N``).
        dtype: head precision of the benchmark (``float32``, ``bfloat16``, ``float16``).
        cache_dir: ONNX/engine cache of the benchmark ("" : ``~/.cache/depthvlm_ros``).
    """

    model: str = "embedded"
    out: str | None = None
    opset: int = DEFAULT_OPSET
    tensorrt: bool = False
    fp16: bool = False
    max_image_tokens: int = 1280
    bench: bool = False
    grid: tuple[int, int] | None = None
    repeats: int = 20
    device: str = "cpu"
    dtype: str = "float32"
    cache_dir: str = ""


@dataclass
class ExportResult:
    """What :func:`run_export` wrote and measured.

    Attributes:
        model_folder: the resolved model folder.
        manifest: contents of ``manifest.json`` (None without ``out``).
        manifest_path: where it was written.
        bench_rows: rows of :func:`benchmark_head_backends` (None without ``bench``).
        bench_path: ``bench.json`` (when both ``out`` and ``bench`` were given).
    """

    model_folder: Path
    manifest: dict[str, Any] | None = None
    manifest_path: Path | None = None
    bench_rows: list[dict[str, Any]] | None = None
    bench_path: Path | None = None


def _check_request(request: ExportRequest) -> None:
    """Refuse requests that cannot succeed, before any slow step."""
    if not request.out and not request.bench:
        raise ExportError("nothing to do: give --out DIR to export, or --bench to time backends")
    if request.fp16 and not request.tensorrt and request.out:
        raise ExportError("--fp16 applies to the TensorRT engine: add --tensorrt "
                          "(the ONNX file is always float32)")
    if request.opset < 18:
        raise ExportError(f"--opset {request.opset} is too old: the exporter needs 18 or newer")
    if request.tensorrt:
        # Fail before the ONNX export rather than after it.
        reason = tensorrt_unavailable_reason()
        if reason:
            raise ExportError(f"--tensorrt: {reason}")


def run_export(request: ExportRequest,
               progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export, check and optionally time the depth head of ``request.model``.

    Args:
        request: what to do.
        progress: called with each line of the report (the command passes ``print``).

    Returns:
        The files written and the figures measured.

    Raises:
        ExportError: the request is inconsistent, the folder unreadable, a backend missing,
            or an export or engine disagrees with the torch head.
    """
    from ..folders import resolve_model_path

    tell = progress or (lambda _message: None)
    _check_request(request)
    folder = resolve_model_path(request.model)
    tell(f"loading the depth head of {folder}")
    head = load_head_from_folder(folder)
    result = ExportResult(model_folder=folder)
    if request.out:
        result.manifest, result.manifest_path = _export(request, head, folder, progress, tell)
    if request.bench:
        result.bench_rows = _bench(request, head, tell)
        if request.out:
            result.bench_path = Path(request.out) / "bench.json"
            result.bench_path.write_text(json.dumps(result.bench_rows, indent=2) + "\n")
            tell(f"wrote {result.bench_path}")
    return result


def _export(request: ExportRequest, head: DPTDepthHead, folder: Path,
            progress: Callable[[str], None] | None, tell: Callable[[str], None]
            ) -> tuple[dict[str, Any], Path]:
    """Write the ONNX file (and engine) into ``request.out``, check them; the manifest."""
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "depth_head.onnx"
    manifest = export_head_onnx(head, onnx_path, opset=request.opset, progress=progress)
    manifest["model_folder"] = str(folder)
    # Check the file we wrote, not the in-memory graph: ONNX Runtime vs torch on a probe.
    err = verify_runtime(OnnxRuntimeHead(onnx_path), head, grid=_VERIFY_GRID)
    manifest["verified"] = {"runtime": "onnxruntime", "grid": list(_VERIFY_GRID),
                            "relative_error_vs_torch": err}
    tell(f"onnxruntime matches torch on a {_VERIFY_GRID[0]}x{_VERIFY_GRID[1]} grid "
         f"(relative error {err:.1e})")
    try:
        import onnxruntime

        manifest["versions"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if request.tensorrt:
        manifest["tensorrt"] = _export_engine(request, head, out, manifest, progress, tell)
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    tell(f"wrote {path}")
    return manifest, path


def _export_engine(request: ExportRequest, head: DPTDepthHead, out: Path,
                   manifest: dict[str, Any], progress: Callable[[str], None] | None,
                   tell: Callable[[str], None]) -> dict[str, Any]:
    """Build the TensorRT engine into ``out``, check it on CUDA; its manifest entry."""
    device = torch.device("cuda", torch.cuda.current_device())
    profile = default_profile(request.max_image_tokens, head_token_pixels(head))
    key = current_engine_key(manifest["onnx_sha256"], "fp16" if request.fp16 else "fp32",
                             profile, device)
    blob = build_tensorrt_engine(out / manifest["onnx_file"], profile, manifest["dims"]["dim_in"],
                                 fp16=request.fp16, progress=progress)
    engine_path = write_engine(out, key, blob)
    cuda_head = head.to(device)
    trt_head = TensorRTHead(blob, profile, cuda_head, device)
    trt_err = verify_runtime(trt_head, cuda_head, grid=profile.opt_grid,
                             tol=2e-2 if request.fp16 else 1e-3)
    tell(f"TensorRT engine {engine_path} matches torch (relative error {trt_err:.1e})")
    head.to("cpu")
    return {"engine_file": engine_path.name, "key": key.as_dict(),
            "relative_error_vs_torch": trt_err}


def _bench(request: ExportRequest, head: DPTDepthHead,
           tell: Callable[[str], None]) -> list[dict[str, Any]]:
    """Time the head on every backend on the requested device and dtype; print the table."""
    device = torch.device(request.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExportError(f"--device {request.device} but CUDA is not available")
    bench_head = head.to(device, getattr(torch, request.dtype))
    rows = benchmark_head_backends(bench_head, grid=request.grid, repeats=request.repeats,
                                   cache_dir=request.cache_dir or None, print_table=False)
    tell(format_benchmark(rows))
    return rows
