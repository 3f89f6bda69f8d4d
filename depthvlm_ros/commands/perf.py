"""``depthvlm perf``: side-by-side performance figures, each a ratio measured within one run.

Runs the benchmarks of :mod:`depthvlm_ros.core.perf` (dense vs per-point queries, prefix reuse,
head backends) and :mod:`depthvlm_ros.ros.perf_node` (point cloud, node overhead), prints
progress, and writes ``perf.json`` (every figure, with medians, repeats and ratios),
``perf.md`` (a summary table) and ``perf.png`` (the ratios, log scale) into ``--out``.

Two models are measured where the issue asks for both: a random "perf" model sized so that its
costs are compute rather than Python overhead, and ``--model`` (default: the embedded model).

``--arch {tiny,4b}`` runs instead the full-architecture benchmark of
:mod:`depthvlm_ros.core.perf_gpu` on ``--device``: depth-only frames of a random-weight model
built on the device (DepthVLM-4B: the Qwen3-VL-4B config), per-stage milliseconds, frames/s,
peak memory, eager against torch.compile / CUDA graphs / a TensorRT head, and the
compute-bound limit. It goes into ``perf.json`` under ``gpu_arch`` and into a ``perf.md``
section. ``--arch tiny --device cpu`` checks that code path without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..core.errors import ConfigError

__all__ = ["HELP", "BENCHMARKS", "add_arguments", "run", "write_summary"]

HELP = ("Measure performance ratios (dense vs per-point, prefix reuse, node overhead, point "
        "cloud, head backends) and write perf.json, perf.md and perf.png.")

#: Benchmark names accepted by ``--only``, in the order they run.
BENCHMARKS = ("dense", "prefix", "head", "pointcloud", "node")

# Image settings. Full: the 640 x 480 camera (fx = fy = 500) and the paper's 256 x 192
# image for the per-point comparison (the same camera, scaled). Quick: small images and a small
# token budget, for tests of the plumbing.
_FULL = dict(frame=(640, 480, 500.0), points_frame=(256, 192, 200.0), points=64, dense_repeats=8,
             repeats=10, max_image_tokens=1280, max_new_tokens=32)
_QUICK = dict(frame=(320, 240, 250.0), points_frame=(160, 120, 125.0), points=6, dense_repeats=2,
              repeats=3, max_image_tokens=48, max_new_tokens=8)
#: Variants of ``--arch`` (the names of :data:`depthvlm_ros.core.perf_gpu.VARIANTS`, kept here
#: so that ``depthvlm --help`` imports no torch).
_ARCH_VARIANTS = ("eager", "compile", "cudagraphs", "trt_head")
# ``--arch`` images: the 640 x 480 camera (fx 500: a 1280 x 960 model image, 1200
# tokens); quick: a 160 x 128 image at the canonical focal (5 x 4 tokens), for tests.
_ARCH_FULL = dict(frame=(640, 480, 500.0), repeats=10)
_ARCH_QUICK = dict(frame=(160, 128, 1000.0), repeats=3)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``depthvlm perf``."""
    p.add_argument("--model", default="embedded",
                   help="model folder or 'embedded' (measured next to a random perf model; "
                        "the node runs this one)")
    p.add_argument("--out", default="runs/perf", help="output folder (default runs/perf)")
    p.add_argument("--only", default="",
                   help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per variant (default 10; 3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="small images, few repeats and a tiny perf model (for tests)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads here and in the node (default 1: on a shared machine "
                        "more threads than free cores make timings meaningless)")
    p.add_argument("--no-perf-model", action="store_true",
                   help="measure only --model (skip the random perf model)")
    g = p.add_argument_group("full architecture (replaces the benchmarks above)")
    g.add_argument("--arch", choices=("tiny", "4b"), default=None,
                   help="benchmark the full DepthVLM architecture with random weights on "
                        "--device: depth-only frames/s, per-stage ms, peak memory, eager vs "
                        "torch.compile / CUDA graphs / TensorRT head, compute-bound limit "
                        "(4b: Qwen3-VL-4B config, 640x480, fx 500)")
    g.add_argument("--device", default="auto",
                   help="device of --arch: auto (cuda when available), cpu, cuda or cuda:N")
    g.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"),
                   help="precision of --arch (auto: bfloat16 on GPU, float32 on CPU)")
    g.add_argument("--variants", default=",".join(_ARCH_VARIANTS),
                   help="comma-separated subset of: " + ", ".join(_ARCH_VARIANTS)
                        + " (eager always runs, as the baseline)")
    g.add_argument("--warmup", type=int, default=None,
                   help="untimed frames per variant of --arch (default 3 on GPU, 1 on CPU)")
    g.add_argument("--budget-s", type=float, default=None,
                   help="--arch: skip variants not yet prepared after this many seconds "
                        "(compiles are not interrupted; bounds a short GPU session)")
    g.add_argument("--peak-tflops", type=float, default=989.0,
                   help="peak TFLOP/s for the compute-bound limit (default 989: H100 SXM dense "
                        "bf16; the H200 is the same chip)")


def _selected(only: str) -> list[str]:
    if not only.strip():
        return list(BENCHMARKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"--only: unknown benchmark(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in names]


def _say(text: str) -> None:
    print(text, flush=True)


def _finite(value: Any) -> Any:
    """JSON-safe: NaN/inf become None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmarks and write the report; non-zero when a benchmark failed."""
    import torch

    from ..core import perf
    from ..core.camera import Intrinsics
    from ..core.config import DepthVLMConfig
    from ..core.folders import read_meta, resolve_model_path
    from ..core.pipeline import DepthVLMPipeline

    if getattr(args, "arch", None):
        return _run_arch(args)
    selected = _selected(args.only)
    settings = dict(_QUICK if args.quick else _FULL)
    repeats = args.repeats if args.repeats is not None else settings["repeats"]
    if repeats < 1 or args.threads < 1:
        raise ConfigError("--repeats and --threads must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    config = DepthVLMConfig(model_path=args.model, device="cpu", dtype="float32",
                            head_backend="torch", max_image_tokens=settings["max_image_tokens"],
                            max_new_tokens=settings["max_new_tokens"])

    def frame(spec):
        w, h, f = spec
        return perf.synthetic_frame(w, h), Intrinsics(f, f, (w - 1) / 2.0, (h - 1) / 2.0, w, h)

    rgb, intr = frame(settings["frame"])
    rgb_pts, intr_pts = frame(settings["points_frame"])

    _say(f"depthvlm perf: {', '.join(selected)}; repeats {repeats}; threads {args.threads}"
         f"{'; quick' if args.quick else ''}; output {out}")
    pipes: dict[str, Any] = {}
    models: dict[str, Any] = {}
    if not args.no_perf_model and any(b in selected for b in ("dense", "prefix", "node")):
        sizes = perf.QUICK_MODEL_SIZES if args.quick else perf.PERF_MODEL_SIZES
        pipe, info = perf.make_perf_pipeline(sizes, config=config)
        name = f"random-{info['parameters'] / 1e6:.1f}M"
        pipes[name], models[name] = pipe, info
    folder = resolve_model_path(args.model)
    t0 = time.perf_counter()
    main_pipe = DepthVLMPipeline.from_config(config)
    main_name = args.model if args.model == "embedded" else folder.name
    pipes[main_name] = main_pipe
    models[main_name] = {"source": str(folder), "model_path": args.model,
                         "parameters": int(sum(p.numel() for p in main_pipe.model.parameters())),
                         "canonical_fx": main_pipe.canonical_fx,
                         "stage": read_meta(folder).get("stage")}
    _say("models: " + ", ".join(f"{n} ({m['parameters'] / 1e6:.2f} M parameters, canonical fx "
                                  f"{m['canonical_fx']:g})" for n, m in models.items())
         + f"; {main_name} loaded in {time.perf_counter() - t0:.1f} s")

    figures: dict[str, Any] = {}
    failed = False

    def attempt(key: str, label: str, fn: Callable[[], dict]) -> None:
        nonlocal failed
        _say(f"[{key}] {label}")
        t = time.perf_counter()
        try:
            result = fn()
            result.setdefault("status", "ok")
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            failed = True
            result = {"status": f"error: {type(exc).__name__}: {exc}"}
            _say(f"    failed: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
        result["wall_s"] = time.perf_counter() - t
        figures.setdefault(key.split("/")[0], {})[key.split("/", 1)[1]] = result

    if "dense" in selected:
        for name, pipe in pipes.items():
            attempt(f"dense_vs_points/{name}",
                    f"{name}: dense map vs {settings['points']} DepthLM-style point queries, "
                    f"{rgb_pts.shape[1]}x{rgb_pts.shape[0]}",
                    lambda p=pipe: perf.bench_dense_vs_points(
                        p, rgb_pts, intr_pts, settings["points"], settings["dense_repeats"],
                        progress=_say))
    if "prefix" in selected:
        for name, pipe in pipes.items():
            attempt(f"prefix_reuse/{name}",
                    f"{name}: {perf.QUESTION_TOKENS}-token question, cached prefix vs full "
                    f"re-prefill, {rgb.shape[1]}x{rgb.shape[0]}",
                    lambda p=pipe: perf.bench_prefix_reuse(p, rgb, intr, repeats, progress=_say))
    if "head" in selected:
        plan = main_pipe.prepare(rgb, intr).plan
        attempt(f"head_backends/{main_name}",
                f"{main_name}: depth head torch vs onnxruntime, grid {plan.grid_h}x{plan.grid_w}",
                lambda: perf.bench_head(main_pipe, (plan.grid_h, plan.grid_w), repeats,
                                        cache_dir=str(out / "engine_cache")))
    from ..ros import perf_node  # imports no ROS itself; says why the node cannot run

    ros_reason = perf_node.node_unavailable_reason() if "node" in selected else None
    if "pointcloud" in selected:
        try:
            import sensor_msgs.msg  # noqa: F401 - the cloud is a sensor_msgs/PointCloud2
            cloud_reason = None
        except ImportError as exc:
            cloud_reason = f"sensor_msgs is not importable ({exc}): source scripts/ros_env.sh"
        if cloud_reason is None:
            attempt(f"pointcloud/{main_name}",
                    f"{main_name}: PointCloud2 build vs model time, {rgb.shape[1]}x{rgb.shape[0]}",
                    lambda: perf_node.bench_point_cloud(main_pipe, rgb, intr, repeats,
                                                        progress=_say))
        else:
            figures["pointcloud"] = {main_name: {"status": f"skipped: {cloud_reason}"}}
            _say(f"[pointcloud] skipped: {cloud_reason}")
    if "node" in selected:
        node_models = {main_name: (args.model, main_pipe)}
        perf_name = next((n for n in pipes if n != main_name), None)
        if perf_name is not None and ros_reason is None:
            # The node loads from a folder: write the random perf model out for it.
            from ..core.folders import write_model_folder

            p = pipes[perf_name]
            folder_out = write_model_folder(p.model, p.tokenizer, out / "perf_model",
                                            meta={"stage": "random-init (depthvlm perf)"})
            node_models[perf_name] = (str(folder_out.resolve()), p)
        for name, (path, pipe) in node_models.items():
            if ros_reason is None:
                attempt(f"node_overhead/{name}",
                        f"{name}: depthvlm_node process, camera in -> depth out over DDS, "
                        f"{rgb.shape[1]}x{rgb.shape[0]}",
                        lambda path=path, pipe=pipe, name=name: perf_node.bench_node_overhead(
                            path, rgb, intr, pipe, frames=repeats,
                            warmup=1 if args.quick else 2, threads=args.threads,
                            log_path=out / f"node_{name}.log", progress=_say,
                            node_params={"max_image_tokens": settings["max_image_tokens"]}))
            else:
                figures.setdefault("node_overhead", {})[name] = {"status": f"skipped: {ros_reason}"}
                _say(f"[node] {name} skipped: {ros_reason}")

    report = {
        "schema": "depthvlm-perf/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "depthvlm perf " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["perf"] else []),
        "note": ("Each figure is a ratio of medians of variants interleaved within this run. "
                 "Absolute times are indicative only: CPU, shared machine, random weights."),
        "quick": bool(args.quick),
        "repeats": repeats,
        "threads": args.threads,
        "device": "cpu",
        "gpu": "not measured: no GPU in this run" if not torch.cuda.is_available() else
               "available but not used by depthvlm perf",
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "machine": platform.machine(), "processor": platform.processor()},
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "models": models,
        "figures": figures,
    }
    return _write_report(report, out, failed)


def _write_report(report: dict, out: Path, failed) -> int:
    """perf.json + perf.md (+ perf.png), printed summary; exit status 1 if a figure failed."""
    report = _finite(report)
    (out / "perf.json").write_text(json.dumps(report, indent=2) + "\n")
    md = write_summary(report, out)
    _say("")
    _say(md)
    _say(f"wrote {out / 'perf.json'}, {out / 'perf.md'}"
         + (f", {out / 'perf.png'}" if (out / "perf.png").is_file() else ""))
    return 1 if failed else 0


def _arch_variants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in _ARCH_VARIANTS]
    if unknown:
        raise ConfigError(f"--variants: unknown variant(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(_ARCH_VARIANTS)}")
    return names


def _run_arch(args: argparse.Namespace) -> int:
    """``--arch``: the full-architecture benchmark; writes perf.json (``gpu_arch``) and perf.md."""
    import torch

    from ..core import perf_gpu
    from ..core.pipeline import resolve_device, resolve_dtype

    settings = dict(_ARCH_QUICK if args.quick else _ARCH_FULL)
    repeats = args.repeats if args.repeats is not None else settings["repeats"]
    variants = _arch_variants(args.variants)
    if repeats < 1 or args.threads < 1 or (args.warmup is not None and args.warmup < 0):
        raise ConfigError("--repeats and --threads must be at least 1, --warmup at least 0")
    if not args.peak_tflops > 0:
        raise ConfigError("--peak-tflops must be positive")
    device = resolve_device(args.device)
    if args.arch == "4b" and device.type != "cuda":
        # 4.4 B parameters built and run on a (shared) CPU take many minutes and ~18 GB.
        raise ConfigError("--arch 4b needs a CUDA device (--device cuda); use --arch tiny "
                          "to check the code path on a CPU")
    dtype = resolve_dtype(args.dtype, device)
    warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    w, h, fx = settings["frame"]
    _say(f"depthvlm perf --arch {args.arch}: {device}, {str(dtype).replace('torch.', '')}, "
         f"{w}x{h} fx {fx:g}, variants {', '.join(variants)}; repeats {repeats}, warmup "
         f"{warmup}; threads {args.threads}; output {out}")
    t0 = time.perf_counter()
    failed = False
    try:
        result = perf_gpu.run_arch_benchmark(
            args.arch, device, dtype, width=w, height=h, fx=fx, repeats=repeats, warmup=warmup,
            variants=variants, progress=_say, peak_flops=args.peak_tflops * 1e12,
            peak_flops_name=("H100 SXM dense bf16, datasheet" if args.peak_tflops == 989.0
                             else "--peak-tflops"),
            budget_s=args.budget_s)
        result["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - still write what is known, and say why
        failed = True
        result = {"status": f"error: {type(exc).__name__}: {exc}", "arch": args.arch}
        _say(f"    failed: {type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
    result["wall_s"] = time.perf_counter() - t0
    gpu = (f"measured: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else
           "not measured: no GPU in this run" if not torch.cuda.is_available() else
           "available but not used (--device cpu)")
    models = {}
    if result.get("parameters"):
        models[f"{args.arch}-random"] = {
            "source": "random weights, built on the device from "
                      + ("qwen3_vl_4b_config()" if args.arch == "4b" else "tiny_config()"),
            "parameters": result["parameters"], "canonical_fx": 1000.0}
    report = {
        "schema": "depthvlm-perf/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "depthvlm perf " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["perf"] else []),
        "note": ("Full architecture with random weights (speed does not depend on weight "
                 "values). Variants are interleaved frame by frame and compared as ratios of "
                 "medians; absolute times are meaningful only when measured on a GPU."),
        "quick": bool(args.quick),
        "repeats": repeats,
        "threads": args.threads,
        "device": str(device),
        "gpu": gpu,
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "machine": platform.machine(), "processor": platform.processor()},
        "settings": {"arch": args.arch, "frame": [w, h, fx], "variants": variants,
                     "warmup": warmup, "dtype": str(dtype).replace("torch.", ""),
                     "peak_tflops": args.peak_tflops},
        "models": models,
        "figures": {},
        "gpu_arch": result,
    }
    return _write_report(report, out, failed)


# --------------------------------------------------------------------------------------------
def _ms(stats: dict | None) -> str:
    if not stats or stats.get("median_ms") is None:
        return "-"
    v = stats["median_ms"]
    return f"{v / 1e3:.2f} s" if v >= 1000 else f"{v:.1f} ms"


def _x(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def _rows(report: dict) -> list[tuple[str, str, str, str, str, str, int | str]]:
    """(figure, model, variant A, variant B, ratio, target, repeats) per measured figure."""
    rows = []
    figs = report["figures"]
    for model, r in figs.get("dense_vs_points", {}).items():
        if r.get("status") != "ok":
            rows.append(("dense vs per-point", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append((f"{r['points']} point queries vs 1 dense map ({r['image'][0]}x{r['image'][1]})",
                     model, f"{r['points_total_s']:.2f} s", _ms(r["dense"]),
                     _x(r["ratio_points_vs_dense"]), "", f"{r['points']}/{r['dense']['n']}"))
        rows.append((f"every pixel of {r['projected_image'][0]}x{r['projected_image'][1]} "
                     "(projected) vs dense", model, f"{r['projected_points_h']:.2f} h",
                     _ms(r["dense"]), _x(r["ratio_projected_all_pixels"]),
                     f"paper {_x(r['paper_ratio_all_pixels'])}",
                     f"{r['points']}/{r['dense']['n']}"))
    for model, r in figs.get("prefix_reuse", {}).items():
        if r.get("status") != "ok":
            rows.append(("prefix reuse", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append((f"first token, {r['question_tokens']}-token question: full re-prefill vs "
                     f"prefix reuse ({r['tokens']} image tokens)", model,
                     _ms(r["first_token_full"]), _ms(r["first_token_reuse"]),
                     _x(r["ratio_first_token"]),
                     f">= 3x {'met' if r['meets_target'] else 'MISSED'}",
                     r["first_token_reuse"]["n"]))
        rows.append((f"whole answer ({r['answer_tokens']} tokens): full vs reuse"
                     f"{'' if r['answers_equal'] else ' (ANSWERS DIFFER)'}", model,
                     _ms(r["answer_full"]), _ms(r["answer_reuse"]), _x(r["ratio_answer"]), "",
                     r["answer_reuse"]["n"]))
    for model, r in figs.get("node_overhead", {}).items():
        if r.get("status") != "ok":
            rows.append(("node overhead", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append(("node overhead (in->out minus node model time) / model time", model,
                     _ms(r["overhead_vs_node_model"]), _ms(r["node_model"]),
                     f"{r['ratio_overhead_vs_model'] * 100:.1f}%"
                     if r.get("ratio_overhead_vs_model") is not None else "-",
                     f"<= 10% {'met' if r['meets_target'] else 'MISSED'}", r["frames"]))
        if r.get("ratio_overhead_vs_direct") is not None:
            rows.append(("node overhead vs direct pipeline timing", model,
                         _ms(r["overhead_vs_direct"]), _ms(r["direct_pipeline"]),
                         f"{r['ratio_overhead_vs_direct'] * 100:.1f}%", "", r["frames"]))
        mc = r.get("message_costs") or {}
        if mc.get("sum_ms") is not None:
            rows.append(("  of which message work in-process (convert + CDR, both ways) / "
                         "overhead", model, f"{mc['sum_ms']:.1f} ms",
                         _ms(r["overhead_vs_node_model"]),
                         f"{mc['sum_ms'] / r['overhead_vs_node_model']['median_ms'] * 100:.0f}%"
                         if (r["overhead_vs_node_model"].get("median_ms") or 0) > 0 else "-",
                         "", r["frames"]))
    for model, r in figs.get("pointcloud", {}).items():
        if r.get("status") != "ok":
            rows.append(("point cloud", model, "-", "-", r["status"], "", "-"))
            continue
        rows.append((f"PointCloud2 build (xyz+rgb) / model time ({r['image'][0]}x{r['image'][1]})",
                     model, _ms(r["cloud_rgb"]), _ms(r["model"]),
                     f"{r['ratio_cloud_vs_model'] * 100:.1f}%", "", r["model"]["n"]))
    for model, r in figs.get("head_backends", {}).items():
        if r.get("status") != "ok":
            rows.append(("head backends", model, "-", "-", r["status"], "", "-"))
            continue
        by = {row["backend"]: row for row in r["rows"]}
        ort = by.get("onnxruntime", {})
        rows.append((f"depth head torch vs onnxruntime (grid {r['grid'][0]}x{r['grid'][1]})",
                     model, _ms({"median_ms": by.get("torch", {}).get("median_ms")}),
                     _ms({"median_ms": ort.get("median_ms")}) if ort.get("status") == "ok"
                     else ort.get("status", "-"),
                     _x(r["ratio_torch_vs_onnxruntime"]), "", r["repeats"]))
    return rows


def _plot(report: dict, path: Path) -> bool:
    """Bar chart of the ratios (log scale); False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figs = report["figures"]
    bars: list[tuple[str, float, float | None]] = []  # label, ratio, target
    for model, r in figs.get("dense_vs_points", {}).items():
        if r.get("status") == "ok":
            bars.append((f"{r['points']} points / dense\n{model}", r["ratio_points_vs_dense"], None))
            bars.append((f"all pixels / dense (proj.)\n{model}",
                         r["ratio_projected_all_pixels"], r["paper_ratio_all_pixels"]))
    for model, r in figs.get("prefix_reuse", {}).items():
        if r.get("status") == "ok":
            bars.append((f"1st token full / reuse\n{model}", r["ratio_first_token"], 3.0))
            bars.append((f"answer full / reuse\n{model}", r["ratio_answer"], None))
    for model, r in figs.get("node_overhead", {}).items():
        if r.get("status") == "ok" and r.get("ratio_overhead_vs_model") is not None:
            bars.append((f"node overhead / model\n{model}",
                         max(r["ratio_overhead_vs_model"], 1e-4), 0.10))
    for model, r in figs.get("pointcloud", {}).items():
        if r.get("status") == "ok":
            bars.append((f"cloud build / model\n{model}", r["ratio_cloud_vs_model"], None))
    for model, r in figs.get("head_backends", {}).items():
        if r.get("status") == "ok" and r.get("ratio_torch_vs_onnxruntime"):
            bars.append((f"head torch / onnxruntime\n{model}", r["ratio_torch_vs_onnxruntime"], None))
    arch = report.get("gpu_arch") or {}
    for name, r in (arch.get("variants") or {}).items():
        if name != "eager" and r.get("status") == "ok" and r.get("speedup_vs_eager"):
            bars.append((f"frame eager / {name}\n{arch['arch']} {arch['dtype']}",
                         r["speedup_vs_eager"], None))
    bars = [b for b in bars if b[1] is not None and b[1] > 0]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(bars) + 1.2))
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, [b[1] for b in bars], color="#4477aa")
    for y, (_, value, target) in zip(ys, bars):
        ax.text(value, y, f" {value:.3g}x", va="center", fontsize=8)
        if target:
            ax.plot([target, target], [y - 0.4, y + 0.4], color="#cc3311", lw=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("ratio of medians (log scale); red tick = target or paper figure")
    ax.set_title("depthvlm perf: ratios measured within one run"
                 + (" (quick)" if report.get("quick") else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_summary(report: dict, out: str | Path) -> str:
    """Write ``perf.md`` (and ``perf.png``) for a ``perf.json`` report; return the Markdown."""
    out = Path(out)
    has_plot = _plot(report, out / "perf.png")
    lines = [
        "# depthvlm perf",
        "",
        f"{report['created']} · {report['device']} · {report['threads']} torch thread(s) · "
        f"repeats {report['repeats']}{' · quick' if report['quick'] else ''} · "
        f"torch {report['host']['torch']} · GPU: {report['gpu']}",
        "",
        report["note"],
    ]
    rows = _rows(report)
    if rows or "gpu_arch" not in report:
        lines += ["", "| figure | model | A | B | A/B | target | n |",
                  "|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append("| " + " | ".join(str(c) for c in row) + " |")
    arch = report.get("gpu_arch")
    if arch is not None:
        lines.append("")
        if arch.get("status", "ok") == "ok":
            from ..core.perf_gpu import summary_markdown

            lines += summary_markdown(arch)
        else:
            lines.append(f"## Full architecture ({arch.get('arch')}): {arch['status']}")
    if report["models"]:
        lines += ["", "Models: " + "; ".join(
            f"{n}: {m['parameters'] / 1e6:.2f} M parameters, canonical fx {m['canonical_fx']:g}"
            for n, m in report["models"].items())]
    if has_plot:
        lines += ["", "![ratios](perf.png)"]
    text = "\n".join(lines) + "\n"
    (out / "perf.md").write_text(text)
    return text
