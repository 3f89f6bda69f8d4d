"""Held-out evaluation during and after training, through the inference pipeline itself.

Depth is scored exactly as the product produces it: :class:`DepthVLMPipeline` resizes the
image to the canonical camera, runs the model, rescales by ``depth_scale`` and returns depth at
the input resolution; the benchmark's arithmetic (:mod:`depthvlm_ros.core.bench.metrics`) then
gives δ1 and AbsRel per image, averaged per dataset (indoor / outdoor for the synthetic
benchmark). Answers are greedy decodes through :meth:`DepthVLMPipeline.answer` (prefix-cache
reuse, the node's path), parsed with the benchmark's :func:`parse_metres`; an answer counts as
right when it is within ``tolerance`` (25 %) of the truth, and an unusable answer counts as
wrong.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch

from ..bench.jsonl import BenchRecord, load_gt_depth, load_rgb
from ..bench.metrics import aggregate, apply_depth_range, dense_pair, image_metrics, resize_nearest
from ..bench.answers import parse_metres
from ..bench.spatial_qa import CHOICE_QA_TYPES, item_truth, pointing_hit, score_text
from ..answers import answer_question
from ..config import DepthVLMConfig
from ..pipeline import DepthVLMPipeline
from ..spatial import sample_depth
from ..frames import record_intrinsics
from .data import MARKER_QUESTION, NUMERIC_QA, POINT_QUESTION, _seeded, draw_ring

__all__ = ["evaluate_model", "answer_correct", "scale_diagnostics", "eval_subset",
           "selection_score", "ANSWER_TOLERANCE", "WORST_OF"]

#: Answer kinds that are not a number the model says (a choice, a place, a measurement).
_NOT_NUMERIC = CHOICE_QA_TYPES + ("pointing", "object_measured")

#: Relative error within which a numeric answer counts as right.
ANSWER_TOLERANCE = 0.25

#: The benchmark metrics (names from :data:`~depthvlm_ros.core.bench.metrics.METRIC_NAMES`)
#: reported per dataset, each with how the summary picks the worst dataset's value: its key is
#: ``<metric>_<min|max>`` (``delta1_min``: the lowest δ1, ``abs_rel_max``: the highest AbsRel).
WORST_OF = {"delta1": min, "abs_rel": max}


def answer_correct(value: float | None, truth: float, tolerance: float = ANSWER_TOLERANCE) -> bool:
    """Whether a parsed answer is within ``tolerance`` of a positive truth (None is wrong)."""
    if value is None or not math.isfinite(value) or truth <= 0:
        return False
    return abs(value - truth) / truth <= tolerance


def scale_diagnostics(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """Split one image's error into global scale and shape.

    Returns ``(scale, delta1_aligned, delta1_constant)``: the median of ``pred / gt`` over the
    valid pixels (1 = right metric scale), δ1 after dividing the prediction by that scale (what
    the shape alone would score), and δ1 of the constant map at the GT's own median (what an
    oracle global scale with no shape at all would score; it depends on the GT only). An image
    whose prediction has no valid pixel where the GT has some gets scale NaN and aligned δ1 0,
    as :func:`~depthvlm_ros.core.bench.metrics.image_metrics` gives it δ1 0; all three are NaN
    when the GT has no valid pixel.
    """
    p = np.asarray(pred, dtype=np.float64).ravel()
    g = np.asarray(gt, dtype=np.float64).ravel()
    has_gt = (g > 0) & np.isfinite(g)
    if not has_gt.any():
        return math.nan, math.nan, math.nan
    constant = image_metrics(np.full(int(has_gt.sum()), np.median(g[has_gt])), g[has_gt]).delta1
    valid = has_gt & (p > 0) & np.isfinite(p)
    if not valid.any():
        return math.nan, 0.0, constant
    p, g = p[valid], g[valid]
    scale = float(np.median(p / g))
    return scale, image_metrics(p / scale, g).delta1, constant


def _group(record: BenchRecord) -> str:
    return record.dataset or "all"


def eval_subset(records: Sequence[BenchRecord], n_images: int) -> list[BenchRecord]:
    """Up to ``n_images`` images (with all their lines), spread evenly over datasets.

    A capped evaluation thus still covers every group (indoor and outdoor); ``n_images`` <= 0
    keeps every record.
    """
    groups: dict[str, dict[str, list[BenchRecord]]] = {}
    for r in records:
        groups.setdefault(_group(r), {}).setdefault(str(r.image), []).append(r)
    if n_images <= 0:
        return records
    per = max(1, n_images // len(groups))
    return [r for g in sorted(groups) for img in list(groups[g])[:per] for r in groups[g][img]]


def selection_score(result: dict[str, Any]) -> float:
    """The score a run keeps its ``best`` folder by: worst-group δ1 + answer accuracy.

    Args:
        result: an :func:`evaluate_model` result; a NaN part (nothing to score) counts as 0.
    """
    s = result["summary"]
    d1 = s["delta1_min"] if s["delta1_min"] == s["delta1_min"] else 0.0
    acc = s["answer_accuracy"] if s["answer_accuracy"] == s["answer_accuracy"] else 0.0
    return d1 + acc


@torch.no_grad()
def evaluate_model(model, tokenizer, records: Sequence[BenchRecord], canonical_fx: float,
                   max_tokens: int = 1280, points_per_image: int = 0,
                   markers_per_image: int = 1, min_depth: float = 1e-3,
                   max_depth: float = float("inf"), seed: int = 0,
                   max_new_tokens: int = 12) -> dict[str, Any]:
    """δ1 / AbsRel per dataset and numeric answer accuracy per question kind and dataset.

    Args:
        model: the (unwrapped) model; put in eval mode for the duration and restored.
        tokenizer: its tokenizer.
        records: held-out records (their ``dataset`` field names the group).
        canonical_fx: the model's canonical focal.
        max_tokens: token budget per image (the node's ``max_image_tokens``).
        points_per_image: "point at pixel (u, v)" questions per image (GT read from the map).
        markers_per_image: red-ring marker questions per image (a new frame each).
        min_depth, max_depth: GT range; outside it GT is invalid.
        seed: picks the question pixels (fixed, so evaluations are comparable over training).
        max_new_tokens: longest answer decoded.

    Returns:
        ``{"depth": {group: {...}}, "answers": {kind: {group: {...}}}, "summary": {...}}``;
        the summary holds the worst group's δ1 / AbsRel and the overall answer accuracy. Each
        depth group also carries :func:`scale_diagnostics` means (``delta1_scale_aligned``,
        ``delta1_gt_median_constant``) and the p50 / p90 per-image scale error as a factor
        (``scale_factor_p50`` = 1.3 means half the images are within 1.3x of the right scale),
        so a shortfall can be traced to scale or to shape.
    """
    was_training = model.training
    model.eval()
    cfg = DepthVLMConfig(canonical_fx=float(canonical_fx), max_image_tokens=int(max_tokens),
                         device="cpu", head_backend="torch", max_new_tokens=max_new_tokens,
                         max_depth=1e4)
    pipe = DepthVLMPipeline(model, tokenizer, cfg, model_canonical_fx=canonical_fx)
    per_image = defaultdict(list)
    scale_diag: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    answers: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    examples: list[dict] = []
    # One frame per image: the depth is scored once and every question about the image
    # continues the same cached prefill (the benchmark holds several lines per image).
    by_image: dict[str, list[BenchRecord]] = {}
    for rec in records:
        by_image.setdefault(str(rec.image), []).append(rec)
    try:
        for recs in by_image.values():
            rec = recs[0]
            grp = _group(rec)
            rgb = load_rgb(rec)
            h, w = rgb.shape[:2]
            intr = record_intrinsics(rec, w, h)
            gt = load_gt_depth(rec)
            if gt is not None and gt.shape != (h, w):
                gt = resize_nearest(gt, (w, h))
            frame = pipe.process_frame(rgb, intr, keep_context=True)
            if gt is not None:
                pred = np.nan_to_num(frame.depth, nan=0.0)
                p, g = dense_pair(pred, apply_depth_range(gt, min_depth, max_depth),
                                  rec.canonical_size)
                per_image[grp].append(image_metrics(p, g))
                scale_diag[grp].append(scale_diagnostics(p, g))
            asks: list[tuple[str, str, Any, BenchRecord | None]] = []
            for r in recs:
                truth = item_truth(r)   # None for depth-only lines
                if truth is not None:
                    asks.append((r.qa_type, r.prompt, truth, r))
            rng = _seeded("eval", seed, rec.source)
            pts = []
            if gt is not None:
                rows, cols = np.nonzero(gt > 0)
                margin = max(6, int(0.03 * min(h, w)))
                keep = ((rows >= margin) & (rows < h - margin) & (cols >= margin)
                        & (cols < w - margin))
                rows, cols = rows[keep], cols[keep]
                if rows.size:
                    for i in rng.choice(rows.size, min(points_per_image + markers_per_image,
                                                       rows.size), replace=False):
                        u, v = int(cols[i]), int(rows[i])
                        d = sample_depth(gt, u, v)
                        if math.isfinite(d) and d > 0:
                            pts.append((u, v, d))
            for u, v, d in pts[:points_per_image]:
                asks.append(("point", POINT_QUESTION.format(u=u, v=v), d, None))
            for kind, question, truth, r in asks:
                box = r.extra.get("object_box") if r is not None else None
                if box is not None:
                    # The product's path: the model's answer, then the grounding follow-up
                    # and the answer measured on the predicted depth inside what it located.
                    res = answer_question(pipe, frame.context, frame.depth, intr, question,
                                          mode="measured", max_new_tokens=max_new_tokens)
                    text = res.model_answer
                    if len(examples) < 16:
                        examples.append({"kind": "grounding", "q": question,
                                         "a": res.grounding_answer, "truth": box})
                    answers["pointing"][grp].append(
                        pointing_hit(res.located_points, box))
                    answers["object_measured"][grp].append(
                        res.ok and score_text(kind, truth, res.answer))
                else:
                    text = pipe.answer(frame.context, question).text
                if kind in CHOICE_QA_TYPES:
                    ok = score_text(kind, truth, text)
                else:
                    ok = answer_correct(parse_metres(text), truth)
                answers[kind][grp].append(ok)
                if len(examples) < 16:
                    examples.append({"kind": kind, "q": question, "a": text, "truth": truth})
            for u, v, d in pts[points_per_image:points_per_image + markers_per_image]:
                marked = pipe.predict(draw_ring(rgb, u, v), intr, question=MARKER_QUESTION)
                ok = answer_correct(parse_metres(marked.answer), d)
                answers["marker"][grp].append(ok)
                if len(examples) < 16:
                    examples.append({"kind": "marker", "uv": [u, v], "a": marked.answer,
                                     "truth": d})
    finally:
        model.train(was_training)
    depth = {}
    for grp, ims in sorted(per_image.items()):
        m = aggregate(ims)
        depth[grp] = {name: getattr(m, name) for name in (*WORST_OF, "n_images")}
        rows = np.array([r for r in scale_diag[grp] if math.isfinite(r[2])]).reshape(-1, 3)
        scales = rows[np.isfinite(rows[:, 0]), 0]
        if rows.size:
            depth[grp].update({"delta1_scale_aligned": float(rows[:, 1].mean()),
                               "delta1_gt_median_constant": float(rows[:, 2].mean())})
        if scales.size:
            err = np.abs(np.log(scales))
            depth[grp].update({"scale_factor_p50": float(np.exp(np.percentile(err, 50))),
                               "scale_factor_p90": float(np.exp(np.percentile(err, 90)))})
    ans_out: dict[str, dict[str, Any]] = {}
    all_ok: list[bool] = []
    numeric_by_group: dict[str, list[bool]] = defaultdict(list)
    for kind, groups in sorted(answers.items()):
        ans_out[kind] = {}
        for grp, oks in sorted(groups.items()):
            ans_out[kind][grp] = {"accuracy": float(np.mean(oks)), "n": len(oks)}
            if kind not in _NOT_NUMERIC:
                all_ok.extend(oks)
                numeric_by_group[grp].extend(oks)
        merged = [o for oks in groups.values() for o in oks]
        ans_out[kind]["all"] = {"accuracy": float(np.mean(merged)), "n": len(merged)}
    ans_out["numeric"] = {g: {"accuracy": float(np.mean(v)), "n": len(v)}
                          for g, v in sorted(numeric_by_group.items())}
    coord = [o for k in NUMERIC_QA for oks in answers.get(k, {}).values() for o in oks]
    summary = {
        **{f"{name}_{worst.__name__}": worst((v[name] for v in depth.values()),
                                             default=float("nan"))
           for name, worst in WORST_OF.items()},
        "answer_accuracy": float(np.mean(all_ok)) if all_ok else float("nan"),
        "n_answers": len(all_ok),
        "marker_accuracy": ans_out.get("marker", {}).get("all", {}).get("accuracy", float("nan")),
        "coordinate_qa_accuracy": float(np.mean(coord)) if coord else float("nan"),
        **{f"{kind}_accuracy": ans_out[kind]["all"]["accuracy"]
           for kind in ("scene_kind", "pointing", "object_measured") if kind in ans_out},
    }
    return {"depth": depth, "answers": ans_out, "summary": summary, "examples": examples}
