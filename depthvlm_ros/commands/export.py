"""``depthvlm export``: the depth head as ONNX (and a TensorRT engine), plus a latency table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import ExportError

__all__ = ["HELP", "add_arguments", "run"]

HELP = "Export the depth head to ONNX (optionally a TensorRT engine); --bench times the backends."


def _grid(text: str) -> tuple[int, int]:
    try:
        gh, gw = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 30x40, got {text!r}") from None
    if gh < 1 or gw < 1:
        raise argparse.ArgumentTypeError(f"grid sides must be positive, got {text!r}")
    return gh, gw


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="embedded", help="model folder or 'embedded'")
    p.add_argument("--out", help="output folder (depth_head.onnx, manifest.json, engine)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (18 or newer)")
    p.add_argument("--tensorrt", action="store_true",
                   help="also build a TensorRT engine (needs TensorRT and a CUDA GPU)")
    p.add_argument("--fp16", action="store_true", help="build the TensorRT engine in FP16")
    p.add_argument("--max-image-tokens", type=int, default=1280,
                   help="token budget the TensorRT profile must cover (grid side <= 64)")
    p.add_argument("--bench", action="store_true",
                   help="time the head on every available backend and print a table")
    p.add_argument("--grid", type=_grid, default=None,
                   help="token grid for --bench, e.g. 30x40 (default: 640x480 image, fx=fy=500)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per backend (--bench)")
    p.add_argument("--device", default="cpu", help="device for --bench: cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="head precision for --bench")
    p.add_argument("--cache-dir", default="",
                   help="ONNX/engine cache for --bench (default ~/.cache/depthvlm_ros)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..core import export as ex
    from ..core.folders import resolve_model_path

    if not args.out and not args.bench:
        raise ExportError("nothing to do: give --out DIR to export, or --bench to time backends")
    if args.fp16 and not args.tensorrt and args.out:
        raise ExportError("--fp16 applies to the TensorRT engine: add --tensorrt "
                          "(the ONNX file is always float32)")
    if args.opset < 18:
        raise ExportError(f"--opset {args.opset} is too old: the exporter needs 18 or newer")
    if args.tensorrt:
        # Fail before the ONNX export rather than after it.
        reason = ex.tensorrt_unavailable_reason()
        if reason:
            raise ExportError(f"--tensorrt: {reason}")
    folder = resolve_model_path(args.model)
    print(f"loading the depth head of {folder}")
    head = ex.load_head_from_folder(folder)
    if args.out:
        _export(args, ex, head, folder)
    if args.bench:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ExportError(f"--device {args.device} but CUDA is not available")
        dtype = getattr(torch, args.dtype)
        bench_head = head.to(device, dtype)
        rows = ex.benchmark_head_backends(bench_head, grid=args.grid, repeats=args.repeats,
                                          cache_dir=args.cache_dir or None, print_table=True)
        if args.out:
            path = Path(args.out) / "bench.json"
            path.write_text(json.dumps(rows, indent=2) + "\n")
            print(f"wrote {path}")
    return 0


def _export(args: argparse.Namespace, ex, head, folder: Path) -> None:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "depth_head.onnx"
    manifest = ex.export_head_onnx(head, onnx_path, opset=args.opset, progress=print)
    manifest["model_folder"] = str(folder)
    # Check the file we wrote, not the in-memory graph: ONNX Runtime vs torch on a probe.
    runtime = ex.OnnxRuntimeHead(onnx_path)
    err = ex.verify_runtime(runtime, head, grid=(3, 4))
    manifest["verified"] = {"runtime": "onnxruntime", "grid": [3, 4],
                            "relative_error_vs_torch": err}
    print(f"onnxruntime matches torch on a 3x4 grid (relative error {err:.1e})")
    try:
        import onnxruntime

        manifest["versions"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if args.tensorrt:
        device = torch.device("cuda", torch.cuda.current_device())
        profile = ex.default_profile(args.max_image_tokens)
        key = ex.current_engine_key(manifest["onnx_sha256"], "fp16" if args.fp16 else "fp32",
                                    profile, device)
        blob = ex.build_tensorrt_engine(onnx_path, profile, manifest["dims"]["dim_in"],
                                        fp16=args.fp16, progress=print)
        engine_path = ex.write_engine(out, key, blob)
        cuda_head = head.to(device)
        trt_head = ex.TensorRTHead(blob, profile, cuda_head, device)
        trt_err = ex.verify_runtime(trt_head, cuda_head, grid=profile.opt_grid,
                                    tol=2e-2 if args.fp16 else 1e-3)
        manifest["tensorrt"] = {"engine_file": engine_path.name, "key": key.as_dict(),
                                "relative_error_vs_torch": trt_err}
        print(f"TensorRT engine {engine_path} matches torch (relative error {trt_err:.1e})")
        head.to("cpu")
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {path}")
