#!/usr/bin/env python3
"""One frame and one question through the full-size model, with the figures that matter.

Loads a model folder through the inference pipeline (``DepthVLMPipeline.from_config``, the
path of ``depthvlm predict`` and the node), predicts depth and an answer for one synthetic
camera frame, and writes a JSON of: the memory estimate made before loading, load time, peak
RSS (``getrusage``) after loading and after the frame, per-stage times, the KV cache one held
frame takes, and the depth / answer it produced. ``scripts/fullsize_check.sh`` runs it.

    python scripts/fullsize_predict.py /work/fullsize --dtype bfloat16 --out runs/fullsize/bf16.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from depthvlm_ros.core.check import validate_model_folder
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.perf.inputs import synthetic_camera_frame
from depthvlm_ros.core.pipeline import DepthVLMPipeline


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def cache_bytes(cache) -> int:
    """Bytes of a DynamicCache's keys and values over all layers."""
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers
               if getattr(layer, "keys", None) is not None)


def frame_arguments(description: str) -> argparse.ArgumentParser:
    """The options of the full-size runs: model, dtype, the frame, the question, threads, out
    (shared with scripts/fullsize_node.py, so both runs see the same frame and question)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("model")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--fx", type=float, default=500.0)
    p.add_argument("--question", default="How far is the object at pixel (u=128, v=96)?")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="JSON file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = frame_arguments(__doc__.splitlines()[0]).parse_args(argv)
    torch.set_num_threads(args.threads)

    config = DepthVLMConfig(model_path=args.model, device="cpu", dtype=args.dtype,
                            head_backend="torch")
    report = validate_model_folder(args.model, dtype=args.dtype, device="cpu",
                                   frame_history=config.frame_history)
    estimate = report.memory
    print(report.format(), flush=True)
    rss_before = peak_rss_bytes()
    t0 = time.perf_counter()
    pipe = DepthVLMPipeline.from_config(config)
    load_s = time.perf_counter() - t0
    rss_loaded = peak_rss_bytes()
    print(f"loaded in {load_s:.1f} s, peak RSS {rss_loaded / 1e9:.2f} GB", flush=True)

    rgb, intr = synthetic_camera_frame(args.width, args.height, args.fx)
    t1 = time.perf_counter()
    pred = pipe.predict(rgb, intr, question=args.question)
    predict_s = time.perf_counter() - t1
    rss_frame = peak_rss_bytes()
    # The first frame also pages the memory-mapped weights in; a second one is the steady state.
    warm = pipe.process_frame(rgb, intr, keep_context=False).timings
    frame = pred.frame
    held = cache_bytes(frame.context.cache)
    depth = pred.depth[np.isfinite(pred.depth)]
    result = {
        "model": str(Path(args.model).resolve()), "dtype": args.dtype,
        "threads": args.threads, "torch": torch.__version__,
        "frame": {"width": args.width, "height": args.height, "fx": args.fx,
                  "model_input": [frame.plan.model_width, frame.plan.model_height],
                  "image_tokens": frame.plan.num_tokens, "resize_mode": frame.plan.mode},
        "estimate_before_load": {"text": estimate.describe(), "weights": estimate.weights,
                                 "kv_cache": estimate.kv_cache,
                                 "activations": estimate.activations, "total": estimate.total},
        "check_seconds": report.seconds,
        "load_s": load_s, "predict_s": predict_s,
        "stages_s": frame.timings, "warm_stages_s": warm,
        "answer_first_token_s": pred.answer_result.first_token_s,
        "answer_total_s": pred.answer_result.total_s,
        "answer_tokens": len(pred.answer_result.token_ids),
        "peak_rss_bytes": {"before_load": rss_before, "after_load": rss_loaded,
                           "after_frame": rss_frame},
        "peak_rss_over_weights": rss_frame / estimate.weights,
        "kv_cache_held_frame": {"bytes": held, "tokens": frame.context.prefix_len,
                                "bytes_per_token": held / frame.context.prefix_len},
        "depth_m": {"shape": list(pred.depth.shape), "valid_fraction":
                    float(np.isfinite(pred.depth).mean()),
                    "min": float(depth.min()) if depth.size else None,
                    "median": float(np.median(depth)) if depth.size else None,
                    "max": float(depth.max()) if depth.size else None},
        "question": args.question, "answer": pred.answer,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("load_s", "stages_s", "warm_stages_s", "answer_total_s",
                                             "peak_rss_over_weights", "kv_cache_held_frame",
                                             "depth_m", "answer")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
