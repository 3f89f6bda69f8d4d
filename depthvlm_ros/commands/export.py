"""``depthvlm export``: the depth head as ONNX (and a TensorRT engine), plus a latency table."""

from __future__ import annotations

import argparse

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
    from ..core.export import ExportRequest, run_export

    request = ExportRequest(model=args.model, out=args.out, opset=args.opset,
                            tensorrt=args.tensorrt, fp16=args.fp16,
                            max_image_tokens=args.max_image_tokens, bench=args.bench,
                            grid=args.grid, repeats=args.repeats, device=args.device,
                            dtype=args.dtype, cache_dir=args.cache_dir)
    # Every failure raises ExportError, which the CLI prints as one line with exit code 1.
    run_export(request, progress=print)
    return 0
