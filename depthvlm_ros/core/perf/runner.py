"""``depthvlm perf`` as one call: choose the benchmarks, run them, collect and write one report.

:func:`run_perf` runs one of two modes and writes ``perf.json``, ``perf.md`` and ``perf.png``
(:mod:`.report`):

* the ratio benchmarks (default): dense vs per-point queries and prefix reuse (:mod:`.ratios`)
  on a random "perf" model sized so that its costs are compute rather than Python overhead and
  on :attr:`PerfOptions.model`; the head backends, the point cloud and the node overhead on
  :attr:`PerfOptions.model` alone. The last two need ROS: they come from the ``ros`` argument
  (:mod:`depthvlm_ros.ros.perf_node`), so that this package stays ROS-free;
* the full-architecture benchmark (:attr:`PerfOptions.arch`, :mod:`.arch`), whose result goes
  under ``gpu_arch`` in the report.

One benchmark that fails does not hide the others: its figure records the error and
:attr:`PerfRun.failed` is set.
"""

from __future__ import annotations

import platform
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ..config import DepthVLMConfig
from ..errors import ConfigError
from .arch import run_arch_benchmark
from .decode import bench_jpeg_decode
from .flops import H100_BF16_DENSE_FLOPS
from .inputs import synthetic_camera_frame
from .ratios import (PERF_MODEL_SIZES, QUESTION_TOKENS, QUICK_MODEL_SIZES, bench_dense_vs_points,
                     bench_camera_batch, bench_head, bench_measured_answers, bench_prefix_reuse,
                     make_perf_pipeline)
from .report import write_report
from .variants import VARIANTS

__all__ = ["BENCHMARKS", "PerfOptions", "PerfRun", "RosBenchmarks", "run_perf"]

#: Benchmark names of :attr:`PerfOptions.only`, in the order they run.
BENCHMARKS = ("dense", "prefix", "answers", "cameras", "decode", "head", "pointcloud",
              "node")

# Image settings. Full: a 640 x 480 camera (fx = fy = 500) and the paper's 256 x 192 image for
# the per-point comparison (the same camera, scaled). Quick: small images and a small token
# budget, for tests of the plumbing.
_FULL = dict(frame=(640, 480, 500.0), points_frame=(256, 192, 200.0), points=64, dense_repeats=8,
             repeats=10, max_image_tokens=1280, max_new_tokens=32)
_QUICK = dict(frame=(320, 240, 250.0), points_frame=(160, 120, 125.0), points=6, dense_repeats=2,
              repeats=3, max_image_tokens=48, max_new_tokens=8)
# Full-architecture images: a 640 x 480 camera (fx 500: a 1280 x 960 model image, 1200 tokens);
# quick: a 160 x 128 image at the canonical focal (5 x 4 tokens), for tests.
_ARCH_FULL = dict(frame=(640, 480, 500.0), repeats=10)
_ARCH_QUICK = dict(frame=(160, 128, 1000.0), repeats=3)

_DATASHEET_PEAK_TFLOPS = H100_BF16_DENSE_FLOPS / 1e12


@dataclass
class PerfOptions:
    """What ``depthvlm perf`` measures and where it writes (one field per command-line option).

    Attributes:
        model: model folder or ``embedded``; measured next to the random perf model.
        out: output folder.
        only: comma-separated subset of :data:`BENCHMARKS` (empty: all of them).
        repeats: timed repeats per variant (None: 10, or 3 with ``quick``).
        quick: small images, few repeats and a tiny perf model (for tests).
        threads: torch threads here and in the node.
        perf_model: also measure the random perf model.
        arch: ``tiny`` or ``4b``: run the full-architecture benchmark instead.
        device: device of ``arch`` (``auto``: cuda when available).
        dtype: precision of ``arch`` (``auto``: bfloat16 on GPU, float32 on CPU).
        variants: comma-separated subset of :data:`~.variants.VARIANTS` for ``arch``.
        warmup: untimed frames per variant of ``arch`` (None: 3 on GPU, 1 on CPU).
        budget_s: ``arch``: skip variants not yet prepared after this many seconds.
        peak_tflops: peak TFLOP/s for the compute-bound limit.
        command: the command line, recorded in the report.
    """

    model: str = DepthVLMConfig.model_path
    out: str = "runs/perf"
    only: str = ""
    repeats: int | None = None
    quick: bool = False
    threads: int = 1
    perf_model: bool = True
    arch: str | None = None
    device: str = DepthVLMConfig.device
    dtype: str = DepthVLMConfig.dtype
    variants: str = ",".join(VARIANTS)
    warmup: int | None = None
    budget_s: float | None = None
    peak_tflops: float = _DATASHEET_PEAK_TFLOPS
    command: str = "depthvlm perf"


@dataclass
class PerfRun:
    """What :func:`run_perf` wrote.

    Attributes:
        report: the report as written to ``perf.json``.
        failed: a benchmark raised (its figure's status says how).
    """

    report: dict[str, Any]
    failed: bool


class RosBenchmarks(Protocol):
    """The benchmarks that need ROS (:mod:`depthvlm_ros.ros.perf_node` provides them)."""

    def node_unavailable_reason(self) -> str | None: ...

    def cloud_unavailable_reason(self) -> str | None: ...

    def bench_point_cloud(self, pipe, rgb, intrinsics, repeats: int = 10,
                          progress: Callable[[str], None] | None = None) -> dict[str, Any]: ...

    def bench_node_overhead(self, model_path: str, rgb, intrinsics, pipe, **kwargs
                            ) -> dict[str, Any]: ...


def run_perf(options: PerfOptions, progress: Callable[[str], None],
             ros: RosBenchmarks | None = None) -> PerfRun:
    """Run the benchmarks ``options`` select and write the report into ``options.out``.

    Args:
        options: what to measure.
        progress: called with every progress line and, at the end, the Markdown summary.
        ros: the ROS benchmarks (point cloud, node overhead); without them those two are
            reported as skipped.

    Raises:
        ConfigError: an option is out of range or names an unknown benchmark or variant.
    """
    if options.arch:
        report, failed = _run_arch(options, progress)
    else:
        report, failed = _run_ratios(options, progress, ros)
    return PerfRun(write_report(report, Path(options.out), progress), failed)


# --------------------------------------------------------------------------------------------
# The ratio benchmarks
# --------------------------------------------------------------------------------------------
class _Figures:
    """The report's ``figures``, filled one benchmark at a time."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.figures: dict[str, dict[str, Any]] = {}
        self.failed = False

    def measure(self, key: str, label: str, fn: Callable[[], dict]) -> None:
        """Run ``fn`` as the figure ``key`` (``group/model``), announced with ``label``."""
        self.say(f"[{key}] {label}")
        group, model = key.split("/", 1)
        result, ok = _attempt(fn, self.say)
        self.failed |= not ok
        self.figures.setdefault(group, {})[model] = result

    def skip(self, group: str, model: str, reason: str) -> None:
        self.figures.setdefault(group, {})[model] = {"status": f"skipped: {reason}"}


def _run_ratios(options: PerfOptions, say: Callable[[str], None],
                ros: RosBenchmarks | None) -> tuple[dict[str, Any], bool]:
    import torch

    selected = _selected(options.only)
    settings = dict(_QUICK if options.quick else _FULL)
    repeats = options.repeats if options.repeats is not None else settings["repeats"]
    if repeats < 1 or options.threads < 1:
        raise ConfigError("--repeats and --threads must be at least 1")
    out = _output_folder(options)
    config = DepthVLMConfig(model_path=options.model, device="cpu", dtype="float32",
                            head_backend="torch", max_image_tokens=settings["max_image_tokens"],
                            max_new_tokens=settings["max_new_tokens"])
    rgb, intr = synthetic_camera_frame(*settings["frame"])
    rgb_pts, intr_pts = synthetic_camera_frame(*settings["points_frame"])

    say(f"depthvlm perf: {', '.join(selected)}; repeats {repeats}; threads {options.threads}"
        f"{'; quick' if options.quick else ''}; output {out}")
    pipes, models, main_name = _load_pipelines(options, selected, config, say)
    main_pipe = pipes[main_name]
    figures = _Figures(say)

    size, size_pts = f"{rgb.shape[1]}x{rgb.shape[0]}", f"{rgb_pts.shape[1]}x{rgb_pts.shape[0]}"
    # Benchmarks run on every loaded model: name -> (figure group, what it measures, run).
    per_model = {
        "dense": ("dense_vs_points",
                  f"dense map vs {settings['points']} DepthLM-style point queries, {size_pts}",
                  lambda p: bench_dense_vs_points(p, rgb_pts, intr_pts, settings["points"],
                                                  settings["dense_repeats"], progress=say)),
        "prefix": ("prefix_reuse",
                   f"{QUESTION_TOKENS}-token question, cached prefix vs full re-prefill, {size}",
                   lambda p: bench_prefix_reuse(p, rgb, intr, repeats, progress=say)),
        "answers": ("measured_answers",
                    "measured answer (parse, measure, word) vs the model's answer on the "
                    f"cached prefix, {size}",
                    lambda p: bench_measured_answers(p, rgb, intr, repeats, progress=say)),
        "cameras": ("camera_batch",
                    f"3 cameras' frames: one batched pass vs one pass each, {size}",
                    lambda p: bench_camera_batch(p, rgb, intr, 3, repeats, progress=say)),
    }
    for bench, (group, what, run) in per_model.items():
        if bench in selected:
            for name, pipe in pipes.items():
                figures.measure(f"{group}/{name}", f"{name}: {what}",
                                lambda run=run, pipe=pipe: run(pipe))
    if "decode" in selected:
        figures.measure("jpeg_decode/-", "JPEG decode, Pillow vs simplejpeg, 640x480 and "
                        "1920x1080", lambda: bench_jpeg_decode(repeats=max(3, 3 * repeats),
                                                               progress=say))
    if "head" in selected:
        plan = main_pipe.prepare(rgb, intr).plan
        figures.measure(f"head_backends/{main_name}",
                        f"{main_name}: depth head torch vs onnxruntime, "
                        f"grid {plan.grid_h}x{plan.grid_w}",
                        lambda: bench_head(main_pipe, (plan.grid_h, plan.grid_w), repeats,
                                           cache_dir=str(out / "engine_cache")))
    node_reason = (_ros_unavailable_reason(ros) or ros.node_unavailable_reason()
                   if "node" in selected else None)
    if "pointcloud" in selected:
        cloud_reason = _ros_unavailable_reason(ros) or ros.cloud_unavailable_reason()
        if cloud_reason is None:
            figures.measure(f"pointcloud/{main_name}",
                            f"{main_name}: PointCloud2 build vs model time, "
                            f"{rgb.shape[1]}x{rgb.shape[0]}",
                            lambda: ros.bench_point_cloud(main_pipe, rgb, intr, repeats,
                                                          progress=say))
        else:
            figures.skip("pointcloud", main_name, cloud_reason)
            say(f"[pointcloud] skipped: {cloud_reason}")
    if "node" in selected:
        node_models = {main_name: (options.model, main_pipe)}
        perf_name = next((n for n in pipes if n != main_name), None)
        if perf_name is not None and node_reason is None:
            # The node loads from a folder: write the random perf model out for it.
            from ..folders import write_model_folder

            p = pipes[perf_name]
            folder_out = write_model_folder(p.model, p.tokenizer, out / "perf_model",
                                            meta={"stage": "random-init (depthvlm perf)"})
            node_models[perf_name] = (str(folder_out.resolve()), p)
        for name, (path, pipe) in node_models.items():
            if node_reason is None:
                figures.measure(f"node_overhead/{name}",
                                f"{name}: depthvlm_node process, camera in -> depth out over "
                                f"DDS, {rgb.shape[1]}x{rgb.shape[0]}",
                                lambda path=path, pipe=pipe, name=name: ros.bench_node_overhead(
                                    path, rgb, intr, pipe, frames=repeats,
                                    warmup=1 if options.quick else 2, threads=options.threads,
                                    log_path=out / f"node_{name}.log", progress=say,
                                    node_params={"max_image_tokens":
                                                 settings["max_image_tokens"]}))
            else:
                figures.skip("node_overhead", name, node_reason)
                say(f"[node] {name} skipped: {node_reason}")

    report = _report(
        options, repeats=repeats, device="cpu", models=models, figures=figures.figures,
        note=("Each figure is a ratio of medians of variants interleaved within this run. "
              "Absolute times are indicative only: CPU, shared machine, random weights."),
        gpu=("not measured: no GPU in this run" if not torch.cuda.is_available() else
             "available but not used by depthvlm perf"),
        settings={k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()})
    return report, figures.failed


def _load_pipelines(options: PerfOptions, selected: Sequence[str], config: DepthVLMConfig,
                    say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The pipelines to measure by name (perf model first), their descriptions, the main name."""
    from ..folders import read_meta, resolve_model_path
    from ..pipeline import DepthVLMPipeline

    pipes: dict[str, Any] = {}
    models: dict[str, Any] = {}
    if options.perf_model and any(b in selected for b in ("dense", "prefix", "answers", "node")):
        sizes = QUICK_MODEL_SIZES if options.quick else PERF_MODEL_SIZES
        pipe, info = make_perf_pipeline(sizes, config=config)
        name = f"random-{info['parameters'] / 1e6:.1f}M"
        pipes[name], models[name] = pipe, info
    folder = resolve_model_path(options.model)
    t0 = time.perf_counter()
    main_pipe = DepthVLMPipeline.from_config(config)
    main_name = options.model if options.model == "embedded" else folder.name
    pipes[main_name] = main_pipe
    models[main_name] = {"source": str(folder), "model_path": options.model,
                         "parameters": int(sum(p.numel() for p in main_pipe.model.parameters())),
                         "canonical_fx": main_pipe.canonical_fx,
                         "stage": read_meta(folder).get("stage")}
    say("models: " + ", ".join(f"{n} ({m['parameters'] / 1e6:.2f} M parameters, canonical fx "
                                 f"{m['canonical_fx']:g})" for n, m in models.items())
        + f"; {main_name} loaded in {time.perf_counter() - t0:.1f} s")
    return pipes, models, main_name


def _ros_unavailable_reason(ros: RosBenchmarks | None) -> str | None:
    if ros is None:
        return "the ROS benchmarks (depthvlm_ros.ros.perf_node) were not given"
    return None


# --------------------------------------------------------------------------------------------
# The full-architecture benchmark
# --------------------------------------------------------------------------------------------
def _run_arch(options: PerfOptions, say: Callable[[str], None]) -> tuple[dict[str, Any], bool]:
    import torch

    from ..pipeline import resolve_device, resolve_dtype

    settings = dict(_ARCH_QUICK if options.quick else _ARCH_FULL)
    repeats = options.repeats if options.repeats is not None else settings["repeats"]
    variants = _known_names(options.variants, VARIANTS, "--variants", "variant")
    if repeats < 1 or options.threads < 1 or (options.warmup is not None and options.warmup < 0):
        raise ConfigError("--repeats and --threads must be at least 1, --warmup at least 0")
    if not options.peak_tflops > 0:
        raise ConfigError("--peak-tflops must be positive")
    device = resolve_device(options.device)
    if options.arch == "4b" and device.type != "cuda":
        # 4.4 B parameters built and run on a (shared) CPU take many minutes and ~18 GB.
        raise ConfigError("--arch 4b needs a CUDA device (--device cuda); use --arch tiny "
                          "to check the code path on a CPU")
    dtype = resolve_dtype(options.dtype, device)
    dtype_name = str(dtype).replace("torch.", "")
    warmup = options.warmup if options.warmup is not None else (3 if device.type == "cuda" else 1)
    out = _output_folder(options)
    w, h, fx = settings["frame"]
    say(f"depthvlm perf --arch {options.arch}: {device}, {dtype_name}, "
        f"{w}x{h} fx {fx:g}, variants {', '.join(variants)}; repeats {repeats}, warmup "
        f"{warmup}; threads {options.threads}; output {out}")
    result, ok = _attempt(lambda: run_arch_benchmark(
        options.arch, device, dtype, width=w, height=h, fx=fx, repeats=repeats, warmup=warmup,
        variants=variants, progress=say, peak_flops=options.peak_tflops * 1e12,
        peak_flops_name=("H100 SXM dense bf16, datasheet"
                         if options.peak_tflops == _DATASHEET_PEAK_TFLOPS else "--peak-tflops"),
        budget_s=options.budget_s), say, arch=options.arch)
    models = {}
    if result.get("parameters"):
        models[f"{options.arch}-random"] = {
            "source": "random weights, built on the device from "
                      + ("qwen3_vl_4b_config()" if options.arch == "4b" else "tiny_config()"),
            "parameters": result["parameters"], "canonical_fx": 1000.0}
    report = _report(
        options, repeats=repeats, device=str(device), models=models, figures={},
        note=("Full architecture with random weights (speed does not depend on weight "
              "values). Variants are interleaved frame by frame and compared as ratios of "
              "medians; absolute times are meaningful only when measured on a GPU."),
        gpu=(f"measured: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else
             "not measured: no GPU in this run" if not torch.cuda.is_available() else
             "available but not used (--device cpu)"),
        settings={"arch": options.arch, "frame": [w, h, fx], "variants": variants,
                  "warmup": warmup, "dtype": dtype_name, "peak_tflops": options.peak_tflops},
        gpu_arch=result)
    return report, not ok


# --------------------------------------------------------------------------------------------
# Shared by both modes
# --------------------------------------------------------------------------------------------
def _known_names(text: str, known: Sequence[str], option: str, kind: str) -> list[str]:
    """The comma-separated names of ``text``; ConfigError naming ``option`` for unknown ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{option}: unknown {kind}(s) {', '.join(unknown)}; "
                          f"choose from {', '.join(known)}")
    return names


def _selected(only: str) -> list[str]:
    """The benchmarks ``only`` names, in :data:`BENCHMARKS` order (all when it is empty)."""
    if not only.strip():
        return list(BENCHMARKS)
    names = _known_names(only, BENCHMARKS, "--only", "benchmark")
    return [n for n in BENCHMARKS if n in names]


def _output_folder(options: PerfOptions) -> Path:
    """Create the output folder and pin torch's threads: the last steps before measuring."""
    import torch

    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(options.threads)
    return out


def _attempt(fn: Callable[[], dict], say: Callable[[str], None],
             **on_error: Any) -> tuple[dict[str, Any], bool]:
    """Run one benchmark; an exception becomes its status (with ``on_error``), not a crash.

    Returns:
        The result with its ``status`` and ``wall_s``, and whether it succeeded.
    """
    t0 = time.perf_counter()
    try:
        result = fn()
        result.setdefault("status", "ok")
        ok = True
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
        result = {"status": f"error: {type(exc).__name__}: {exc}", **on_error}
        say(f"    failed: {type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
        ok = False
    result["wall_s"] = time.perf_counter() - t0
    return result, ok


def _report(options: PerfOptions, *, note: str, repeats: int, device: str, gpu: str,
            settings: dict[str, Any], models: dict[str, Any], figures: dict[str, Any],
            **extra: Any) -> dict[str, Any]:
    """The report of either mode: the run's header, then its settings, models and figures."""
    import torch

    return {
        "schema": "depthvlm-perf/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": options.command,
        "note": note,
        "quick": bool(options.quick),
        "repeats": repeats,
        "threads": options.threads,
        "device": device,
        "gpu": gpu,
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "machine": platform.machine(), "processor": platform.processor()},
        "settings": settings,
        "models": models,
        "figures": figures,
        **extra,
    }
