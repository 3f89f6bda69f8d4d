"""Speed of the full DepthVLM architecture on one device: depth-only frames, stage by stage.

:func:`run_arch_benchmark` builds a DepthVLM from its config with random weights (speed does
not depend on weight values) directly on the device, wraps it in the real
:class:`~depthvlm_ros.core.pipeline.DepthVLMPipeline`, and times depth-only frames
(``process_frame(keep_context=False)``) of a synthetic camera image:

* per stage: preprocess (CPU), vision tower, LLM prefill over the image prefix, depth head,
  post-processing, and the whole frame; the pipeline's own timings (it synchronizes the GPU
  between stages), with the vision/prefill boundary added by a synchronizing wrapper around
  :meth:`~depthvlm_ros.core.model.DepthVLMForConditionalGeneration.image_features`;
* frames/s (1 / median frame time) and peak GPU memory;
* the variants of :mod:`.variants` (eager, torch.compile, CUDA graphs, a TensorRT head),
  interleaved frame by frame (A, B, C, A, B, C, ...) so that a load change hits all of them;
  a variant that cannot run here is reported as skipped with the reason and the run goes on.

Next to the measured frames/s stands the compute-bound limit: ``peak_flops / flops_per_frame``,
with the matmul FLOPs of one depth-only frame counted analytically (:func:`.flops.frame_flops`).

Absolute times mean something only on a GPU; on a CPU (``arch="tiny"``, for tests of this code
path) only the structure and the ratios are of interest, and the GPU-only variants are skipped.
"""

from __future__ import annotations

import platform
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from transformers import Qwen3VLConfig

from ..config import DepthVLMConfig
from ..model import DepthVLMForConditionalGeneration, tiny_config
from ..pipeline import DepthVLMPipeline
from .flops import H100_BF16_DENSE_FLOPS, format_flops, frame_flops
from .inputs import synthetic_camera_frame
from .timing import ratio_of_medians, say, summarize, synchronized_time
from .variants import (VARIANTS, Variant, VariantSwapper, dynamo_counts, prepare_variant,
                       recompile_limit, short_error)

__all__ = [
    "ARCHS",
    "STAGES",
    "TARGET_FPS",
    "qwen3_vl_4b_config",
    "arch_config",
    "build_random_model",
    "run_arch_benchmark",
]

#: Architectures :func:`run_arch_benchmark` can build.
ARCHS = ("tiny", "4b")
#: Stages of a depth-only frame, in order (``total`` is the whole frame).
STAGES = ("preprocess", "vision", "prefill", "head", "postprocess", "total")
#: The target: depth-only frames per second on one H100.
TARGET_FPS = 30.0


def qwen3_vl_4b_config() -> Qwen3VLConfig:
    """DepthVLM-4B: Qwen3-VL-4B's published dimensions plus the release's DPT head.

    The dimensions are those of ``config.json`` of Qwen/Qwen3-VL-4B-Instruct (the key-layout
    test in ``test/test_model.py`` uses this config too); token ids are Qwen3-VL's defaults. The DPT
    head takes its release widths (256 features, channels 256/512/1024/1024) by default.
    """
    return Qwen3VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                         num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                         head_dim=128, max_position_embeddings=262144,
                         rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0,
                                          "mrope_section": [24, 20, 20],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                           out_hidden_size=2560, num_position_embeddings=2304,
                           deepstack_visual_indexes=[5, 11, 17]),
        tie_word_embeddings=True, depth_head_type="dpt")


def arch_config(arch: str, tokenizer) -> Qwen3VLConfig:
    """The config of ``arch``: ``4b`` (:func:`qwen3_vl_4b_config`) or ``tiny`` (the tests' model).

    Args:
        arch: one of :data:`ARCHS`.
        tokenizer: the tokenizer the pipeline will use; ``tiny`` takes its vocabulary and
            special-token ids from it (``4b`` keeps Qwen's, which only name positions here).
    """
    if arch == "4b":
        return qwen3_vl_4b_config()
    if arch == "tiny":
        from ..tokenizer import SPECIAL_TOKENS

        special = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
        return tiny_config(len(tokenizer), special)
    raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")


def build_random_model(config: Qwen3VLConfig, device: torch.device | str, dtype: torch.dtype,
                       attn_implementation: str = "sdpa", seed: int = 0
                       ) -> DepthVLMForConditionalGeneration:
    """A DepthVLM of ``config`` with random weights, created on ``device`` in ``dtype``.

    Parameters are allocated and initialized on the device itself (the ``torch.device``
    context) in the target dtype (``_from_config``'s default-dtype context): building the 4B
    model on a CPU in float32 first would take minutes and 18 GB of host memory.
    """
    torch.manual_seed(seed)
    with torch.device(device):
        model = DepthVLMForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation=attn_implementation)
    return model.eval()


class _StageClock:
    """Splits the pipeline's ``vision_prefill`` stage where the vision tower ends.

    An instance attribute shadows the model's ``image_features`` method (which ``encode``
    calls first), synchronizing before and after it; the pipeline already synchronizes around
    ``encode``, so the two extra synchronizations change no overlap.
    """

    def __init__(self, pipe: DepthVLMPipeline) -> None:
        self.model = pipe.model
        self.device = pipe.device
        self.vision_s = float("nan")
        original = self.model.image_features

        def timed(pixel_values, image_grid_thw):
            t0 = synchronized_time(self.device)
            out = original(pixel_values, image_grid_thw)
            self.vision_s = synchronized_time(self.device) - t0
            return out

        self.model.image_features = timed

    def close(self) -> None:
        self.model.__dict__.pop("image_features", None)


def _matmul_rate(device: torch.device, dtype: torch.dtype, n: int = 8192, repeats: int = 10
                 ) -> float | None:
    """Measured ``n^3`` matmul FLOP/s on ``device`` (CUDA only): the achievable ceiling."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize(device)
    seconds = start.elapsed_time(end) / 1e3 / repeats
    del a, b
    return 2.0 * n ** 3 / seconds


def _depth_diff(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """``max|a - b| / (1 + max|b|)`` over pixels valid in both (None when none are)."""
    if a is None or b is None or a.shape != b.shape:
        return None
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return None
    return float(np.abs(a[ok] - b[ok]).max() / (1.0 + np.abs(b[ok]).max()))


def run_arch_benchmark(arch: str = "4b", device: torch.device | str = "cuda",
                       dtype: torch.dtype = torch.bfloat16, width: int = 640, height: int = 480,
                       fx: float = 500.0, repeats: int = 10, warmup: int = 3,
                       variants: Sequence[str] = VARIANTS,
                       progress: Callable[[str], None] | None = None, *,
                       peak_flops: float = H100_BF16_DENSE_FLOPS,
                       peak_flops_name: str = "H100 SXM dense bf16, datasheet",
                       target_fps: float = TARGET_FPS, max_image_tokens: int = 1280,
                       resize_mode: str | None = None, attn_implementation: str = "sdpa",
                       cache_dir: str | None = None, compile_backend: str = "inductor",
                       cpu_compile: bool = False, budget_s: float | None = None,
                       seed: int = 0) -> dict[str, Any]:
    """Time depth-only frames of the full architecture, per stage and per variant, in one run.

    Args:
        arch: ``4b`` (DepthVLM-4B, :func:`qwen3_vl_4b_config`) or ``tiny`` (the tests' model).
        device: where the model is built and run.
        dtype: model precision (bf16 for the target figure).
        width, height, fx: the camera (fy = fx, principal point at the centre). The default
            640 x 480 at fx 500 is resized to the canonical focal 1000: a 1280 x 960 model
            image, 30 x 40 = 1200 image tokens.
        repeats: timed frames per variant.
        warmup: untimed frames per variant first (compiling happens here; CUDA-graph variants
            get at least 3, since they record on the second call).
        variants: subset of :data:`VARIANTS`; ``eager`` is always added as the baseline.
        progress: called with one line per step.
        peak_flops: the device's peak FLOP/s for the compute-bound limit.
        peak_flops_name: what ``peak_flops`` is, for the report.
        target_fps: frames/s to compare the best variant with (GPU runs only).
        max_image_tokens: the pipeline's token budget.
        resize_mode: ``release`` or ``metric``; default ``release`` for ``4b`` (the
            checkpoint's preprocessing, whose CPU cost counts) and ``metric`` for ``tiny``.
        attn_implementation: attention kernels of the model (``sdpa``, ``eager``...).
        cache_dir: folder for the head's ONNX file and TensorRT engine (default: the
            pipeline's engine cache, ``~/.cache/depthvlm_ros``, so a rerun reuses the engine).
        compile_backend: ``torch.compile`` backend (``inductor``; ``eager``/``aot_eager`` only
            check that the layers trace).
        cpu_compile: run ``compile`` on a CPU too (to check the code path; not a figure).
        budget_s: seconds from the start after which variants not yet prepared are skipped
            (compiling cannot be interrupted, so this bounds the run only between variants;
            it keeps a short run on a lent GPU from losing every figure to one slow compile).
        seed: weight seed.

    Returns:
        A JSON-ready dict: the model and image, FLOPs and compute-bound limits, and per
        variant its status, per-stage millisecond summaries, frames/s, speed-up over eager,
        peak memory and the depth difference from eager.
    """
    from ..tokenizer import build_tokenizer

    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be at least 1 and warmup at least 0")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(VARIANTS)}")
    names = ["eager"] + [v for v in VARIANTS if v in variants and v != "eager"]
    is_cuda = device.type == "cuda"

    t_build = t_start = time.perf_counter()
    tokenizer = build_tokenizer(vocab_size=512, seed=seed)
    config = arch_config(arch, tokenizer)
    say(progress, f"building {arch} ({config.text_config.num_hidden_layers} LLM layers, "
                  f"{config.vision_config.depth} vision blocks) on {device} in "
                  f"{str(dtype).replace('torch.', '')}, random weights")
    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model = build_random_model(config, device, dtype, attn_implementation, seed)
    synchronized_time(device)
    build_s = time.perf_counter() - t_build
    params = int(sum(p.numel() for p in model.parameters()))
    weight_bytes = int(sum(p.numel() * p.element_size() for p in model.parameters()))
    after_build = int(torch.cuda.memory_allocated(device)) if is_cuda else None
    mode = resize_mode or ("release" if arch == "4b" else "metric")
    pipe_cfg = DepthVLMConfig(device=str(device), dtype=str(dtype).replace("torch.", ""),
                              head_backend="torch", max_image_tokens=max_image_tokens,
                              resize_mode=mode)
    pipe = DepthVLMPipeline(model, tokenizer, pipe_cfg, model_canonical_fx=1000.0)
    rgb, intr = synthetic_camera_frame(width, height, fx, seed)
    plan = pipe.prepare(rgb, intr).plan
    grid = (plan.grid_h, plan.grid_w)
    out_hw = (plan.model_height, plan.model_width)
    seq_len = len(pipe.prompt_ids(plan.num_tokens))
    flops = frame_flops(config, grid, seq_len, out_hw)
    say(progress, f"built in {build_s:.1f} s: {params / 1e9:.3f} B parameters "
                  f"({weight_bytes / 2 ** 30:.2f} GiB); {width}x{height} fx {fx:g} -> model image "
                  f"{plan.model_width}x{plan.model_height}, grid {grid[0]}x{grid[1]} "
                  f"({plan.num_tokens} image tokens, {seq_len}-token prefix); "
                  f"{format_flops(flops['total'])} per depth-only frame, compute-bound limit "
                  f"{peak_flops / flops['total']:.1f} frames/s at {peak_flops / 1e12:.0f} TFLOP/s")

    swapper = VariantSwapper(pipe)
    clock = _StageClock(pipe)
    results: dict[str, dict[str, Any]] = {}
    prepared: dict[str, Variant] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    depth: dict[str, np.ndarray] = {}

    def frame(v: Variant) -> dict[str, float]:
        with swapper.active(v):
            if v.mark_step:
                torch.compiler.cudagraph_mark_step_begin()
            res = pipe.process_frame(rgb, intr, keep_context=False)
        times = dict(res.timings)
        times["vision"] = clock.vision_s
        times["prefill"] = times["vision_prefill"] - clock.vision_s
        depth[v.name] = res.depth
        return times

    try:
        with recompile_limit(64):
            # Prepare and warm every variant (compiling, recording graphs, building engines)
            # before any timed frame, so the timed rounds see only steady-state frames.
            for name in names:
                t0 = time.perf_counter()
                if name != "eager" and budget_s is not None and t0 - t_start > budget_s:
                    v = Variant(name, status=f"skipped: the time budget ({budget_s:g} s) was "
                                              f"spent before this variant ({t0 - t_start:.0f} s)")
                else:
                    v = prepare_variant(name, pipe, swapper, grid, out_hw, cache_dir,
                                         compile_backend, cpu_compile, progress)
                if v.status != "ok":
                    results[name] = {"status": v.status}
                    say(progress, f"[{name}] {v.status}")
                    continue
                before = dynamo_counts()
                first_s = None
                try:
                    for i in range(max(warmup, v.min_warmup)):
                        t = time.perf_counter()
                        frame(v)
                        if i == 0:
                            first_s = synchronized_time(device) - t
                    peak = None
                    if is_cuda:
                        torch.cuda.reset_peak_memory_stats(device)
                        frame(v)
                        peak = int(torch.cuda.max_memory_allocated(device))
                except Exception as exc:  # noqa: BLE001 - see below
                    if name == "eager":
                        raise  # the baseline failing is a bug, not an unavailable variant
                    results[name] = {"status": "skipped: failed while warming up: "
                                               + short_error(exc)}
                    say(progress, f"[{name}] {results[name]['status']}")
                    continue
                after = dynamo_counts()
                prepared[name] = v
                samples[name] = {s: [] for s in STAGES}
                results[name] = {
                    "status": "ok", "notes": v.notes,
                    "first_frame_s": first_s, "prepare_and_warmup_s": time.perf_counter() - t0,
                    "warmup_frames": max(warmup, v.min_warmup), "peak_memory_bytes": peak,
                    "dynamo": ({k: after[k] - before.get(k, 0) for k in after}
                               if name in ("compile", "cudagraphs") else None)}
                say(progress, f"[{name}] ready in {results[name]['prepare_and_warmup_s']:.1f} s "
                              f"(first frame {first_s:.2f} s"
                              + (f", peak {peak / 2 ** 30:.2f} GiB)" if peak else ")"))

            # Timed rounds: every variant once per round, starting variant rotating.
            order = list(prepared)
            for r in range(repeats):
                k = r % len(order)
                for name in order[k:] + order[:k]:
                    if name not in prepared:
                        continue  # failed in an earlier round
                    try:
                        times = frame(prepared[name])
                    except Exception as exc:  # noqa: BLE001
                        if name == "eager":
                            raise
                        prepared.pop(name)
                        results[name] = {"status": f"skipped: failed in timed frame {r + 1}: "
                                                   f"{short_error(exc)}"}
                        say(progress, f"[{name}] {results[name]['status']}")
                        continue
                    for s in STAGES:
                        samples[name][s].append(times[s])
                if (r + 1) % max(1, repeats // 4) == 0 or r + 1 == repeats:
                    say(progress, f"    round {r + 1}/{repeats}: " + ", ".join(
                        f"{n} {np.median(samples[n]['total']) * 1e3:.1f} ms"
                        for n in prepared))
    finally:
        clock.close()

    eager_total = samples["eager"]["total"]
    for name in prepared:
        s = samples[name]
        model_s = [a + b + c for a, b, c in zip(s["vision"], s["prefill"], s["head"])]
        total_med = float(np.median(s["total"]))
        results[name].update({
            "stages": {st: summarize(s[st]) for st in STAGES},
            "model_stages": summarize(model_s),
            "fps": 1.0 / total_med if total_med > 0 else None,
            "fps_model_stages": 1.0 / float(np.median(model_s)) if np.median(model_s) > 0 else None,
            "speedup_vs_eager": ratio_of_medians(eager_total, s["total"]),
            "stage_speedup_vs_eager": {st: ratio_of_medians(samples["eager"][st], s[st])
                                       for st in STAGES},
            # Model FLOP utilization over the whole frame and over the GPU stages alone.
            "mfu": (flops["total"] / total_med / peak_flops) if is_cuda and total_med > 0 else None,
            "mfu_model_stages": (flops["total"] / float(np.median(model_s)) / peak_flops
                                 if is_cuda and np.median(model_s) > 0 else None),
            "depth_rel_diff_vs_eager": _depth_diff(depth.get(name), depth.get("eager")),
        })

    matmul = _matmul_rate(device, dtype) if is_cuda and dtype != torch.float32 else None
    ok = {n: r for n, r in results.items() if r.get("status") == "ok" and r.get("fps")}
    best = max(ok, key=lambda n: ok[n]["fps"]) if ok else None
    host = {"python": platform.python_version(), "torch": torch.__version__,
            "machine": platform.machine()}
    try:
        import transformers

        host["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - the model needs it
        pass
    if is_cuda:
        props = torch.cuda.get_device_properties(device)
        host.update(gpu=props.name, gpu_memory_bytes=int(props.total_memory),
                    cuda=torch.version.cuda,
                    compute_capability=f"{props.major}.{props.minor}")
    return {
        "arch": arch,
        "device": str(device),
        "device_name": host.get("gpu", platform.processor() or platform.machine()),
        "dtype": str(dtype).replace("torch.", ""),
        "attn_implementation": attn_implementation,
        "absolute_times_meaningful": is_cuda,
        "note": ("Variants are interleaved frame by frame; speed-ups are ratios of medians from "
                 "this run. " + ("Absolute times are from this GPU." if is_cuda else
                                 "CPU run: absolute times say nothing about the GPU target.")),
        "image": [width, height],
        "fx": fx,
        "resize_mode": mode,
        "model_image": [plan.model_width, plan.model_height],
        "grid": list(grid),
        "image_tokens": plan.num_tokens,
        "sequence_tokens": seq_len,
        "vision_patches": flops["vision_patches"],
        "parameters": params,
        "weights_bytes": weight_bytes,
        "build_s": build_s,
        "repeats": repeats,
        "warmup": warmup,
        "memory": {"after_build_allocated_bytes": after_build,
                   "peak_allocated_bytes": (int(torch.cuda.max_memory_allocated(device))
                                            if is_cuda else None),
                   "note": "peak per variant: one frame after warm-up, from "
                           "torch.cuda.max_memory_allocated (weights included)"},
        "flops": flops,
        "peak_flops": peak_flops,
        "peak_flops_name": peak_flops_name,
        "compute_bound_fps": peak_flops / flops["total"],
        "measured_matmul_flops": matmul,
        "compute_bound_fps_measured_matmul": (matmul / flops["total"]) if matmul else None,
        "target_fps": target_fps,
        "best_variant": best,
        "best_fps": ok[best]["fps"] if best else None,
        "meets_target": (bool(ok[best]["fps"] >= target_fps) if best and is_cuda else None),
        "variants": results,
        "host": host,
    }
