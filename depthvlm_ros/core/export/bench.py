"""Latency of the depth head on every backend, measured side by side, and its table."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from .cache import default_cache_dir
from .interface import (canonical_grid, grid_pixels, head_device_dtype, head_of,
                        head_token_pixels, probe_features)
from .runtimes import BACKENDS, make_head_runtime
from .tensorrt import default_profile

__all__ = ["benchmark_head_backends", "format_benchmark"]


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
        grid: token grid (gh, gw); default :func:`canonical_grid` of the head's token size
            (30 x 40 for 32-pixel tokens: 640x480 image, fx = fy = 500, canonical focal 1000).
            Output size is the model image, token size x ``grid``.
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
    device, dtype = head_device_dtype(head)
    token_pixels = head_token_pixels(head)
    grid = tuple(grid) if grid else canonical_grid(token_pixels=token_pixels)
    out_hw = grid_pixels(grid, token_pixels)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    fp16 = (dtype != torch.float32) if fp16 is None else fp16
    feats = probe_features(head, grid, seed)
    profile = default_profile(token_pixels=token_pixels)
    rows: list[dict[str, Any]] = []
    runtimes: dict[str, Callable] = {}
    ordered = sorted(set(backends), key=lambda b: (b != "torch", BACKENDS.index(b)))
    for backend in ordered:
        row: dict[str, Any] = {"backend": backend, "grid": list(grid), "out_hw": list(out_hw),
                               "device": str(device), "dtype": str(dtype).replace("torch.", "")}
        try:
            runtimes[backend] = make_head_runtime(backend, head, cache_dir, fp16=fp16,
                                                  profile=profile)
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
