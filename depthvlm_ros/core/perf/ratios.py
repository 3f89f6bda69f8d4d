"""Ratio benchmarks of the depth pipeline: each figure compares two variants timed in one run.

* :func:`bench_dense_vs_points` — one dense depth map (vision + prefill + head) against
  DepthLM-style per-point text queries (marker drawn on the image, vision + full prefill +
  greedy decode of the number, for every point), with the projection to every pixel of a
  256 x 192 image (the DepthVLM paper quotes 0.42 s against 13 h).
* :func:`bench_prefix_reuse` — a question about a frame whose depth is already computed:
  :meth:`~depthvlm_ros.core.pipeline.DepthVLMPipeline.answer` on the frame's cached prefill
  against a full re-prefill (vision + the whole prompt), first token and whole answer, with a
  check that both decode the same tokens.
* :func:`bench_head` — the depth head on torch against onnxruntime
  (:func:`depthvlm_ros.core.export.benchmark_head_backends`).

How variants are interleaved and compared is in :mod:`.timing`. The node-overhead and
point-cloud benchmarks need ROS and live in :mod:`depthvlm_ros.ros.perf_node`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ..bench import DEPTHLM_QUESTION, draw_marker, parse_metres
from ..camera import Intrinsics
from ..config import DepthVLMConfig
from ..pipeline import DepthVLMPipeline
from .timing import ratio_of_medians, say, summarize, synchronized_time

__all__ = [
    "MEASURED_ANSWER_TARGET",
    "bench_measured_answers",
    "bench_camera_batch",
    "PERF_MODEL_SIZES",
    "QUICK_MODEL_SIZES",
    "PAPER_IMAGE",
    "PAPER_DENSE_S",
    "PAPER_POINTS_S",
    "QUESTION_TOKENS",
    "FullPrefillAnswer",
    "answer_budget",
    "make_perf_pipeline",
    "question_with_tokens",
    "full_prefill_answer",
    "point_query",
    "bench_dense_vs_points",
    "bench_prefix_reuse",
    "bench_head",
]

#: The random "perf" model: big enough that prefill and decode are compute, not Python overhead
#: (a first token after the cached prefix takes several ms, not the ~2 ms floor of a 0.5 M model).
PERF_MODEL_SIZES: dict[str, Any] = dict(text_hidden=256, text_layers=4, text_heads=4,
                                        text_kv_heads=2, vision_hidden=128, vision_depth=4,
                                        vision_heads=4, head_features=64)
#: ``--quick``: the tests' tiny model (a few MB), for structure checks, not figures.
QUICK_MODEL_SIZES: dict[str, Any] = {}

#: The image the paper's per-pixel projection is for (width, height).
PAPER_IMAGE = (256, 192)
#: The paper's figures for that image: one dense map, and DepthLM asked at every pixel.
PAPER_DENSE_S = 0.42
PAPER_POINTS_S = 13 * 3600.0

#: Length of the question of the prefix-reuse benchmark, in the model's own tokens.
QUESTION_TOKENS = 16

# Questions cut down to an exact token count; several, because a cut can fall inside a word
# whose tokens do not survive a decode/encode round trip with every tokenizer.
_QUESTION_SOURCES = (
    "How far is the chair next to the window from the camera, in metres, and is it closer "
    "than the table behind it on the left side of the room?",
    "What is the distance between the camera and the nearest door in this picture, measured "
    "in metres along the optical axis of the camera?",
    "Which object in the image is closest to the camera and how many metres away is it from "
    "the lens of the camera that took this picture?",
)


#: Largest cost of a measured answer as a share of the model's answer latency.
MEASURED_ANSWER_TARGET = 0.05


def make_perf_pipeline(sizes: dict[str, Any] | None = None, seed: int = 0,
                       config: DepthVLMConfig | None = None) -> tuple[DepthVLMPipeline, dict]:
    """A random DepthVLM of ``sizes`` (default :data:`PERF_MODEL_SIZES`) in a torch pipeline.

    Returns:
        The pipeline (float32, CPU, torch head) and a description (sizes, parameter count).
    """
    from ..folders import make_tiny_model

    sizes = dict(PERF_MODEL_SIZES if sizes is None else sizes)
    model, tokenizer = make_tiny_model(seed=seed, **sizes)
    cfg = config or DepthVLMConfig(device="cpu", dtype="float32", head_backend="torch")
    pipe = DepthVLMPipeline(model, tokenizer, cfg)
    info = {"source": "random (make_tiny_model)", "sizes": sizes,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "canonical_fx": pipe.canonical_fx}
    return pipe, info


def question_with_tokens(pipe: DepthVLMPipeline, n: int = QUESTION_TOKENS) -> str:
    """A natural-language question that is exactly ``n`` tokens with ``pipe``'s tokenizer.

    "Tokens" means the question body as the pipeline tokenizes it, without the chat-turn
    tokens that close the user turn and open the assistant's.

    Raises:
        ValueError: when no candidate can be cut to exactly ``n`` tokens.
    """
    tail = len(pipe._suffix_tail)
    for source in _QUESTION_SOURCES:
        ids = pipe.tokenizer(source, add_special_tokens=False).input_ids
        if len(ids) < n:
            continue
        text = pipe.tokenizer.decode(ids[:n], skip_special_tokens=True)
        # The pipeline strips the question, so a cut that ends in a space must be re-checked.
        if len(pipe.question_ids(text)) - tail == n:
            return text.strip()
        for cut in range(n - 1, 0, -1):  # shorter cut + a final "?" as the last token
            candidate = pipe.tokenizer.decode(ids[:cut], skip_special_tokens=True).strip() + "?"
            if len(pipe.question_ids(candidate)) - tail == n:
                return candidate
    raise ValueError(f"no candidate question is exactly {n} tokens with this tokenizer")


@dataclass
class FullPrefillAnswer:
    """A greedy answer decoded after a full prefill (vision + the whole prompt)."""

    text: str
    token_ids: list[int]
    first_token_s: float
    total_s: float
    first_logits: torch.Tensor


@torch.inference_mode()
def full_prefill_answer(pipe: DepthVLMPipeline, model_image, question: str,
                        max_new_tokens: int | None = None) -> FullPrefillAnswer:
    """Answer ``question`` without any cached prefix: vision tower + prefill of the whole prompt.

    This is what a VLM without prefix reuse does for each question, and what DepthLM does for
    every point (its image differs per point). Only the last position goes through ``lm_head``,
    so the full path is not charged for logits it does not need. Greedy decoding and the stop
    rule are those of :meth:`DepthVLMPipeline.answer`, so both paths should give the same tokens.

    Args:
        pipe: the pipeline whose model, tokenizer and prompt layout are used.
        model_image: :meth:`DepthVLMPipeline.prepare` output (preprocessing is not timed).
        question: the user's question.
        max_new_tokens: answer length limit (default: the pipeline's ``max_new_tokens``).
    """
    model = pipe.model
    plan = model_image.plan
    ids = torch.tensor([pipe.prompt_ids(plan.num_tokens, question)], device=pipe.device)
    pixel_values = model_image.pixel_values.to(pipe.device, pipe.dtype)
    grid = model_image.image_grid_thw.to(pipe.device)
    limit = max_new_tokens or pipe.config.max_new_tokens
    t0 = synchronized_time(pipe.device)
    enc = model.encode(ids, pixel_values, grid, use_cache=True)
    logits = model.lm_head(enc.hidden[:, -1])
    first_logits = logits[0].float().cpu()
    tokens: list[int] = []
    first_s = 0.0
    position = enc.next_position
    for step in range(limit):
        nxt = int(torch.argmax(logits[0]))
        if step == 0:
            first_s = synchronized_time(pipe.device) - t0
        if nxt in pipe.eos_ids:
            break
        tokens.append(nxt)
        if step + 1 == limit:
            break
        logits = model.decode_step(torch.tensor([[nxt]], device=pipe.device), enc.cache,
                                   position)[:, -1]
        position += 1
    total = synchronized_time(pipe.device) - t0
    text = pipe.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return FullPrefillAnswer(text, tokens, first_s, total, first_logits)


def point_query(pipe: DepthVLMPipeline, rgb: np.ndarray, intrinsics: Intrinsics,
                uv: tuple[float, float], max_new_tokens: int,
                question: str = DEPTHLM_QUESTION) -> tuple[float, FullPrefillAnswer]:
    """One DepthLM-style query: draw the marker, preprocess, full prefill, greedy decode.

    Returns:
        (seconds for the whole query, the answer).
    """
    t0 = time.perf_counter()
    marked = draw_marker(rgb, uv[0], uv[1])
    answer = full_prefill_answer(pipe, pipe.prepare(marked, intrinsics), question, max_new_tokens)
    return synchronized_time(pipe.device) - t0, answer


def answer_budget(pipe: DepthVLMPipeline, example: str = "2.35") -> int:
    """Decode steps of a numeric answer: the tokens of ``example`` plus the end-of-turn token.

    A trained DepthLM answers a number and stops; a random model never says end-of-turn, so
    its decode is capped at what a real numeric answer would take.
    """
    return len(pipe.tokenizer(example, add_special_tokens=False).input_ids) + 1


def bench_dense_vs_points(pipe: DepthVLMPipeline, rgb: np.ndarray, intrinsics: Intrinsics,
                          n_points: int = 64, dense_repeats: int = 8, seed: int = 0,
                          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Dense depth in one forward against DepthLM-style per-point text queries, same model.

    ``n_points`` point queries (each a fresh image with its marker: no prefix reuse is possible)
    are timed with ``dense_repeats`` dense maps spread evenly between them. The projection to
    every pixel of :data:`PAPER_IMAGE` uses the median per-point time.

    Returns:
        Medians, the measured ratio (``n_points`` queries against one dense map), the projected
        per-pixel ratio and hours, and how many answers parsed as a number of metres.
    """
    h, w = rgb.shape[:2]
    rng = np.random.default_rng(seed)
    margin = max(8, min(h, w) // 10)
    points = np.stack([rng.uniform(margin, w - margin, n_points),
                       rng.uniform(margin, h - margin, n_points)], axis=1)
    budget = answer_budget(pipe)
    # Untimed warm-up of both paths (allocator, first-call dispatch).
    pipe.process_frame(rgb, intrinsics, keep_context=False)
    point_query(pipe, rgb, intrinsics, tuple(points[0]), budget)
    dense_at = set(np.linspace(0, n_points, dense_repeats, endpoint=False).astype(int).tolist())
    dense_s: list[float] = []
    point_s: list[float] = []
    tokens: list[int] = []
    parsed = 0
    frame = None
    for i, uv in enumerate(points):
        if i in dense_at:
            t0 = time.perf_counter()
            frame = pipe.process_frame(rgb, intrinsics, keep_context=False)
            dense_s.append(synchronized_time(pipe.device) - t0)
        seconds, ans = point_query(pipe, rgb, intrinsics, (float(uv[0]), float(uv[1])), budget)
        point_s.append(seconds)
        tokens.append(len(ans.token_ids))
        parsed += parse_metres(ans.text) is not None
        if (i + 1) % max(1, n_points // 4) == 0:
            say(progress, f"    {i + 1}/{n_points} point queries, "
                          f"median {np.median(point_s) * 1e3:.0f} ms; "
                          f"dense median {np.median(dense_s) * 1e3:.0f} ms")
    pixels = PAPER_IMAGE[0] * PAPER_IMAGE[1]
    per_point = float(np.median(point_s))
    dense = float(np.median(dense_s))
    return {
        "image": [w, h],
        "tokens": frame.plan.num_tokens if frame else None,
        "dense": summarize(dense_s),
        "point_query": summarize(point_s),
        "points": n_points,
        "points_total_s": float(np.sum(point_s)),
        "decode_budget_tokens": budget,
        "mean_answer_tokens": float(np.mean(tokens)),
        "answers_parsed_as_metres": parsed,
        "ratio_points_vs_dense": float(np.sum(point_s)) / dense,
        "ratio_point_vs_dense": per_point / dense,
        "projected_pixels": pixels,
        "projected_image": list(PAPER_IMAGE),
        "projected_points_s": per_point * pixels,
        "projected_points_h": per_point * pixels / 3600.0,
        "ratio_projected_all_pixels": per_point * pixels / dense,
        "paper_ratio_all_pixels": PAPER_POINTS_S / PAPER_DENSE_S,
    }


def bench_prefix_reuse(pipe: DepthVLMPipeline, rgb: np.ndarray, intrinsics: Intrinsics,
                       repeats: int = 10, question: str | None = None,
                       n_question_tokens: int = QUESTION_TOKENS,
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Question about an already processed frame: cached prefix against a full re-prefill.

    Each repeat processes the frame (keeping its prefill), then answers the question both
    ways, alternating which goes first. The full path reuses the preprocessed image, so only
    vision + prefill + decode is charged to it (preprocessing would only widen the gap).

    Returns:
        First-token and whole-answer medians both ways, their ratios (full / reuse), the
        question and its token count, and whether both ways decoded the same tokens.
    """
    question = question or question_with_tokens(pipe, n_question_tokens)
    q_tokens = len(pipe.question_ids(question)) - len(pipe._suffix_tail)
    model_image = pipe.prepare(rgb, intrinsics)
    limit = pipe.config.max_new_tokens
    frame = pipe.process_frame(rgb, intrinsics, keep_context=True)
    pipe.answer(frame.context, question, limit)  # warm-up, untimed
    full_prefill_answer(pipe, model_image, question, limit)
    reuse_first, reuse_total, full_first, full_total, frame_s = [], [], [], [], []
    same, first_token_same, max_logit_diff = True, True, 0.0
    reuse_ids: list[int] = []
    full_ids: list[int] = []
    for i in range(repeats):
        frame = pipe.process_frame(rgb, intrinsics, keep_context=True)
        frame_s.append(frame.timings["total"])
        order = ("reuse", "full") if i % 2 == 0 else ("full", "reuse")
        for which in order:
            if which == "reuse":
                r = pipe.answer(frame.context, question, limit)
                reuse_first.append(r.first_token_s)
                reuse_total.append(r.total_s)
                reuse_ids, reuse_logits = r.token_ids, r.first_logits
            else:
                f = full_prefill_answer(pipe, model_image, question, limit)
                full_first.append(f.first_token_s)
                full_total.append(f.total_s)
                full_ids, full_logits = f.token_ids, f.first_logits
        same &= reuse_ids == full_ids
        first_token_same &= reuse_ids[:1] == full_ids[:1]
        max_logit_diff = max(max_logit_diff, float((reuse_logits - full_logits).abs().max()))
        say(progress, f"    repeat {i + 1}/{repeats}: first token reuse "
                      f"{reuse_first[-1] * 1e3:.1f} ms vs full {full_first[-1] * 1e3:.1f} ms")
    ratio_first = ratio_of_medians(full_first, reuse_first)
    return {
        "image": [int(rgb.shape[1]), int(rgb.shape[0])],
        "tokens": model_image.plan.num_tokens,
        "question": question,
        "question_tokens": q_tokens,
        "max_new_tokens": limit,
        "answer_tokens": len(reuse_ids),
        "frame": summarize(frame_s),
        "first_token_reuse": summarize(reuse_first),
        "first_token_full": summarize(full_first),
        "answer_reuse": summarize(reuse_total),
        "answer_full": summarize(full_total),
        "ratio_first_token": ratio_first,
        "ratio_answer": ratio_of_medians(full_total, reuse_total),
        "target_ratio_first_token": 3.0,
        "meets_target": bool(ratio_first >= 3.0),
        "answers_equal": bool(same),
        "first_tokens_equal": bool(first_token_same),
        "max_abs_first_logit_diff": max_logit_diff,
        "answer_reuse_ids": list(reuse_ids),
        "answer_full_ids": list(full_ids),
    }


def bench_head(pipe: DepthVLMPipeline, grid: tuple[int, int], repeats: int = 10,
               cache_dir: str | None = None) -> dict[str, Any]:
    """The depth head on torch against onnxruntime, same random features, interleaved.

    Returns:
        The rows of :func:`~depthvlm_ros.core.export.benchmark_head_backends` and the ratio
        ``torch / onnxruntime`` of the medians (the onnxruntime speed-up; None if unavailable).
    """
    from ..export import benchmark_head_backends, format_benchmark

    rows = benchmark_head_backends(pipe.model, grid=grid, repeats=repeats,
                                   warmup=min(3, repeats), backends=("torch", "onnxruntime"),
                                   cache_dir=cache_dir, print_table=False)
    by_name = {r["backend"]: r for r in rows}
    ort = by_name.get("onnxruntime", {})
    speedup = ort.get("speedup_vs_torch") if ort.get("status") == "ok" else None
    tp = pipe.model.token_pixels  # benchmark_head_backends times the model image's size
    return {"grid": list(grid), "out_hw": [tp * grid[0], tp * grid[1]], "repeats": repeats,
            "rows": rows, "table": format_benchmark(rows),
            "ratio_torch_vs_onnxruntime": (float(speedup) if speedup is not None
                                           and math.isfinite(speedup) else None)}


#: Questions of the measured-answer benchmark: (name, question, given pixels, given regions)
#: for a W x H frame; the numbers scale with the frame so every target lies inside it.
def _answer_questions(width: int, height: int) -> list[tuple[str, str, list, list]]:
    u0, v0, u1, v1 = width // 4, height // 2, 3 * width // 4, height // 3
    box = (width // 3, height // 3, width // 3, height // 3)
    return [
        ("one pixel", f"How far is the point at pixel (u={u0}, v={v0}) from the camera?", [], []),
        ("two pixels", f"Which is nearer, (u={u0}, v={v0}) or (u={u1}, v={v1})?", [], []),
        ("region", "How far is the nearest thing in this region?", [], [box]),
        ("whole image", "Is anything closer than 1.5 m here?", [],
         [(0, 0, width, height)]),
    ]


def bench_measured_answers(pipe: DepthVLMPipeline, rgb: np.ndarray, intrinsics: Intrinsics,
                           repeats: int = 10, progress: Callable[[str], None] | None = None
                           ) -> dict[str, Any]:
    """What measuring an answer on the depth map costs next to the model's own answer.

    One frame is processed with its prefill kept; then, per question kind (one pixel, two
    pixels, a region, the whole image as a region), the model's answer on the cached prefix
    and :func:`~depthvlm_ros.core.answers.measured_answer` (parse, measure, word) run
    interleaved ``repeats`` times. The ratio is measured / model of the medians; the target is
    at most 5 %.
    """
    from ..answers import measured_answer

    result = pipe.process_frame(rgb, intrinsics, keep_context=True)
    h, w = result.depth.shape
    rows = []
    for name, question, pixels, regions in _answer_questions(w, h):
        model_s, measure_s = [], []
        pipe.answer(result.context, question)  # warm-up, both paths
        measured_answer(result.depth, intrinsics, question, pixels, regions)
        for _ in range(repeats):
            t = time.perf_counter()
            pipe.answer(result.context, question)
            model_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            measured_answer(result.depth, intrinsics, question, pixels, regions)
            measure_s.append(time.perf_counter() - t)
        ratio = ratio_of_medians(measure_s, model_s)
        rows.append({"question": name, "text": question, "model": summarize(model_s),
                     "measure": summarize(measure_s), "ratio_measure_vs_model": ratio,
                     "meets_target": bool(ratio <= MEASURED_ANSWER_TARGET)})
        say(progress, f"  {name}: measure {np.median(measure_s) * 1e3:.2f} ms vs model "
                      f"{np.median(model_s) * 1e3:.1f} ms ({ratio * 100:.2f} %)")
    return {"image": [w, h], "repeats": repeats, "rows": rows,
            "target": MEASURED_ANSWER_TARGET,
            "meets_target": all(r["meets_target"] for r in rows)}


@torch.inference_mode()
def bench_camera_batch(pipe: DepthVLMPipeline, rgb: np.ndarray, intrinsics: Intrinsics,
                       cameras: int = 3, repeats: int = 5,
                       progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Frames of several same-size cameras as the node runs them with ``batch_frames``: one
    :meth:`~depthvlm_ros.core.pipeline.DepthVLMPipeline.process_frames` call (one batched
    pass, caches split per frame) against one ``process_frame`` per camera, interleaved
    ``repeats`` times.

    The cameras' frames are ``rgb`` with a different brightness each, so the rows differ. The
    ratio is sequential / batched of the medians (above 1: batching pays); every batched depth
    map must equal that frame's depth alone.
    """
    frames = [(np.clip(rgb.astype(np.int16) + 8 * k, 0, 255).astype(np.uint8), intrinsics)
              for k in range(cameras)]

    def sequential() -> list[np.ndarray]:
        return [pipe.process_frame(f, i).depth for f, i in frames]

    def batched() -> list[np.ndarray]:
        results = pipe.process_frames(frames)
        for r in results:
            if isinstance(r, Exception):
                raise r
        if {r.batch_size for r in results} != {cameras}:
            raise RuntimeError(f"the {cameras} frames did not share one pass")
        return [r.depth for r in results]

    alone, together = sequential(), batched()  # warm-up, both paths
    diff = max(float(np.nanmax(np.abs(a - b)) / max(float(np.nanmax(np.abs(a))), 1e-12))
               for a, b in zip(alone, together))
    seq_s, batch_s = [], []
    for _ in range(repeats):
        t = synchronized_time(pipe.device)
        sequential()
        seq_s.append(synchronized_time(pipe.device) - t)
        t = synchronized_time(pipe.device)
        batched()
        batch_s.append(synchronized_time(pipe.device) - t)
    ratio = ratio_of_medians(seq_s, batch_s)
    say(progress, f"  {cameras} cameras: one pass each {np.median(seq_s) * 1e3:.1f} ms, one "
                  f"batched pass {np.median(batch_s) * 1e3:.1f} ms (x{ratio:.2f})")
    return {"image": [int(rgb.shape[1]), int(rgb.shape[0])],
            "tokens": int(pipe.prepare(rgb, intrinsics).plan.num_tokens),
            "cameras": cameras, "repeats": repeats, "sequential": summarize(seq_s),
            "batched": summarize(batch_s), "ratio_sequential_vs_batched": ratio,
            "max_relative_depth_difference": diff}
