"""Run DepthVLM-Bench: a depth model (or saved predictions) and reference baselines.

What is evaluated:

* the model: a callable ``depth_fn(rgb, intrinsics) -> depth`` (metres, NaN invalid), or a
  folder of saved ``<image stem>.npy`` depth maps from any other model;
* ``const_median``: one constant depth per dataset, the dataset's ``train_median_m`` from the
  config when given, otherwise the median of the pooled valid GT of the whole test set (one
  number per dataset, never a per-image value);
* ``depthlm`` (optional): a DepthLM-style per-point VLM, ``point_fn(rgb_with_marker,
  intrinsics, (u, v)) -> metres``, asked once per point with a marker drawn on the image (see
  :mod:`.depthlm`), and ``model@points``: the dense model scored on exactly the same points, so
  accuracy and cost compare like for like.

Protocols (see :mod:`.metrics` for the arithmetic and :data:`PROTOCOL_DEFINITIONS`):

* ``auto`` (default): the authors' rule, each record scored once: sparse when it has
  ``pixel_coords`` + ``depth``, dense otherwise. This is the number to compare with the paper.
* ``sparse``: the annotated points of every record that has them.
* ``dense``: the whole (masked) GT map of every record that has one, points or not (ours: the
  authors never score a record with points densely).

Sparse sampling (:data:`SPARSE_SAMPLING`): the authors index their model's raw output
``pred_map[y, x]`` at coordinates on the ``canonical_size`` grid, without resizing it; their
model predicts at the canonical scale, on its own multiple-of-32 grid near ``canonical_size``
(e.g. 1344x1024 for 1342x1006). Saved predictions (``predictions=DIR``) are treated exactly like
their saved ``_pred.npy`` (``raw``). Our ``depth_fn`` returns depth at the *input* resolution
instead, so its map is first resized bilinearly to ``canonical_size`` (``resize``); indexing it
raw would read the wrong pixels whenever the image is not already at the canonical size.

The test sets are :class:`~.datasets.DatasetSpec` values (:mod:`.datasets`).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..camera import Intrinsics
from ..distributed import gather_to_main, init_distributed, shard_indices
from ..errors import ConfigError, InputError
from ..frames import record_intrinsics
from .answers import point_metrics
from .datasets import DatasetSpec, predictions_from_dir
from .depthlm import PointFn, ask_points, depthlm_points
from .jsonl import BenchRecord, apply_gt_masks, load_gt_depth, load_rgb, read_jsonl
from .tally import GROUPS, ROWS, Sample, Tally
from .synthetic.constants import ALL_QA_TYPES
from .metrics import (METRIC_DEFINITIONS, METRIC_PROVENANCE, SparseTargets, apply_depth_range,
                      dense_pair, image_metrics, points_inside, resize_linear, resize_nearest,
                      sample_points, sparse_targets)

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_DEFINITIONS",
    "SPARSE_SAMPLING",
    "GROUPS",
    "ROWS",
    "DepthFn",
    "Sample",
    "BenchResult",
    "run_benchmark",
]

DepthFn = Callable[[np.ndarray, Intrinsics], np.ndarray]

#: Protocol names accepted by :func:`run_benchmark`.
PROTOCOLS = ("auto", "sparse", "dense")

#: What each protocol scores, written into results.json and the report.
PROTOCOL_DEFINITIONS = {
    "auto": "the authors' rule (eval.py): a record with pixel_coords + depth is scored on its "
            "points only, a record without points on its dense GT map; each image once. "
            "Compare these numbers with the paper",
    "sparse": "the annotated points of every record that has them (unmasked GT map at the "
              "points, JSONL depth where the map is 0)",
    "dense": "the whole GT map (masks applied) of every record that has one, including records "
             "with points (ours: the authors score those sparse only)",
}

#: How the prediction is sampled at the sparse points.
SPARSE_SAMPLING = {
    "raw": "the prediction indexed as given, pred[y, x], at the points' canonical-grid "
           "coordinates; points outside it dropped (the authors' treatment of their model's "
           "output, on a multiple-of-32 grid near canonical_size)",
    "resize": "the prediction first resized bilinearly to canonical_size (our depth_fn returns "
              "depth at the input image's resolution, not at the canonical scale)",
    "auto": "raw for saved predictions (--predictions), resize for a model run here",
}

#: qa_type labels of our generator's spatial-QA lines.
SYNTHETIC_QA_TYPES = frozenset(ALL_QA_TYPES)


@dataclass
class BenchResult:
    """Everything a report needs: the ``results.json`` document and sample images.

    Under ``torchrun`` only rank 0 holds them (``is_main``); the other ranks' results are
    empty, their records having been gathered to rank 0.
    """

    results: dict
    samples: list[Sample] = field(default_factory=list)
    is_main: bool = True


@dataclass(frozen=True)
class _Settings:
    """How every record of a run is scored (the validated arguments of :func:`run_benchmark`)."""

    protocols: tuple[str, ...]
    sampling: str
    strict_range: bool
    point_fn: PointFn | None
    depthlm_points: int


def _downsize(a: np.ndarray, max_side: int = 320) -> np.ndarray:
    h, w = a.shape[:2]
    s = max(h, w) / max_side
    if s <= 1:
        return a
    size = (max(1, round(w / s)), max(1, round(h / s)))
    if a.ndim == 3:
        return np.stack([resize_nearest(a[..., c], size) for c in range(a.shape[2])], axis=-1)
    return resize_nearest(a, size)


def _rgb_on_grid(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == shape:
        return rgb
    return np.stack([resize_nearest(rgb[..., c], (shape[1], shape[0])) for c in range(3)], axis=-1)


def _pooled_median(records: Sequence[BenchRecord], spec: DatasetSpec) -> float:
    """Median of valid GT over a whole test set (a subsample of each map, fixed seed)."""
    chunks = []
    for rec in records:
        gt = load_gt_depth(rec)
        if gt is not None:
            v = apply_depth_range(gt, spec.min_depth, spec.max_depth)
            v = v[v > 0]
            if v.size > 4096:
                v = np.random.default_rng(rec.seed).choice(v, 4096, replace=False)
        else:
            v = np.asarray(rec.depth, dtype=np.float32)
            v = v[(v > 0) & (v >= spec.min_depth) & (v <= spec.max_depth)]
        chunks.append(v)
    pooled = np.concatenate(chunks) if chunks else np.zeros(0)
    return float(np.median(pooled)) if pooled.size else 1.0


def _constant(records: Sequence[BenchRecord], spec: DatasetSpec) -> tuple[float, str]:
    """The ``const_median`` baseline's depth for a dataset, and where it comes from."""
    if spec.train_median_m is not None:
        return float(spec.train_median_m), "train_median_m (config)"
    return _pooled_median(records, spec), "median of pooled test GT"


def _check_pred(pred: Any, where: str) -> np.ndarray:
    arr = np.squeeze(np.asarray(pred, dtype=np.float32))
    if arr.ndim != 2:
        raise InputError(f"{where}: the model returned depth of shape {arr.shape}, expected (H, W)")
    return arr


def _pred_for_points(pred: np.ndarray, tg: SparseTargets, sampling: str,
                     image_size: tuple[int, int]) -> np.ndarray:
    """The map the sparse points are read from (see :data:`SPARSE_SAMPLING`)."""
    if sampling == "raw":
        return pred  # the authors' pred_map[y, x], whatever its grid
    return resize_linear(pred, tg.grid_size or image_size)


class _RecordScorer:
    """Scores one record's prediction in every protocol, and its per-point baseline.

    The dense grid and the sparse values are computed once and shared by the protocols that
    need them (``auto`` and ``dense``, ``auto`` and ``sparse``).
    """

    def __init__(self, tally: Tally, settings: _Settings, spec: DatasetSpec, rec: BenchRecord,
                 rgb: np.ndarray, intr: Intrinsics, pred: np.ndarray, const: float | None,
                 order: int = 0, dataset_index: int = 0) -> None:
        self.tally, self.settings, self.spec, self.rec = tally, settings, spec, rec
        self.order, self.dataset_index = order, dataset_index
        self.rgb, self.intr, self.pred, self.const = rgb, intr, pred, const
        h, w = rgb.shape[:2]
        self.image_size = (w, h)
        # Marker / intrinsics grid; the sparse coordinates use rec.original_rgb_size as is.
        self.orig_size = rec.original_rgb_size or (w, h)
        # The authors' sparse branch loads GT without the iBims-1 masks, their dense branch
        # with them: keep one unmasked and one masked copy (the same array when no mask).
        gt_native = load_gt_depth(rec, masks=False)
        self.gt_sparse = self.gt_dense = None
        if gt_native is not None:
            self.gt_sparse = apply_depth_range(gt_native, spec.min_depth, spec.max_depth)
            masked = apply_gt_masks(rec, gt_native)
            self.gt_dense = (self.gt_sparse if masked is gt_native else
                             apply_depth_range(masked, spec.min_depth, spec.max_depth))
        # An all-invalid GT map is "no map" for the points (the reference's loader returns
        # None there and its sparse branch then fails; we use the annotation values).
        self.gt_for_points = (self.gt_sparse if self.gt_sparse is not None
                              and (self.gt_sparse > 0).any() else None)
        self.dense_grid: tuple[np.ndarray, np.ndarray] | None = None
        self.sparse_vals: tuple[np.ndarray, np.ndarray] | None = None

    def _targets(self, coords: Any, depths: Any, coords_size: Sequence[int] | None,
                 gt_map: np.ndarray | None) -> SparseTargets:
        return sparse_targets(coords, depths, coords_size, self.rec.canonical_size, gt_map,
                              self.spec.min_depth, self.spec.max_depth,
                              self.settings.strict_range)

    def _dense(self) -> tuple[np.ndarray, np.ndarray]:
        if self.dense_grid is None:
            self.dense_grid = dense_pair(self.pred, self.gt_dense, self.rec.canonical_size)
        return self.dense_grid

    def score(self) -> None:
        """Add the record to every protocol's model and const_median rows."""
        for proto in self.settings.protocols:
            mode = proto if proto != "auto" else ("sparse" if self.rec.has_points else "dense")
            (self._score_sparse if mode == "sparse" else self._score_dense)(proto)

    def _score_dense(self, proto: str) -> None:
        rows, name = self.tally.rows[proto], self.spec.name
        if self.gt_dense is None:
            self.tally.skipped[name]["dense_no_gt_map"] += 1
            return
        p_grid, g_grid = self._dense()
        rows["model"].add(name, image_metrics(p_grid, g_grid), p_grid, g_grid, mode="dense",
                          order=self.order)
        if self.const is not None:
            c_map = np.full_like(g_grid, self.const)
            rows["const_median"].add(name, image_metrics(c_map, g_grid), c_map, g_grid,
                                     mode="dense", order=self.order)

    def _score_sparse(self, proto: str) -> None:
        rows, name, rec = self.tally.rows[proto], self.spec.name, self.rec
        if not rec.has_points:
            self.tally.skipped[name]["sparse_no_points"] += 1
            return
        if self.sparse_vals is None:
            tg = self._targets(rec.pixel_coords, rec.depth, rec.original_rgb_size,
                               self.gt_for_points)
            self.sparse_vals = sample_points(
                _pred_for_points(self.pred, tg, self.settings.sampling, self.image_size), tg)
        pv, gv = self.sparse_vals
        rows["model"].add(name, image_metrics(pv, gv), pv, gv, mode="sparse", order=self.order)
        if self.const is not None:
            cv = np.full_like(gv, self.const)
            rows["const_median"].add(name, image_metrics(cv, gv), cv, gv, mode="sparse",
                                     order=self.order)

    def score_depthlm(self) -> None:
        """Ask the per-point VLM and add it and ``model@points`` to every protocol."""
        rec, name, tally = self.rec, self.spec.name, self.tally
        coords, depths = depthlm_points(rec, self.gt_dense, self.orig_size,
                                        self.settings.depthlm_points)
        if not len(coords):
            return
        answers = ask_points(self.settings.point_fn, self.rgb, self.intr, coords, self.orig_size)
        tally.point_times[name].extend(answers.seconds)
        tally.point_image_times[name].append(sum(answers.seconds, 0.0))
        tally.parse_fail["asked"] += len(answers.metres)
        tally.parse_fail["failed"] += answers.failed
        if rec.has_points:
            # The annotated points: exactly the sparse protocol's targets.
            tg = self._targets(coords, depths, rec.original_rgb_size, self.gt_for_points)
        else:
            # Points drawn from the (masked) dense map, in image pixels.
            tg = self._targets(coords, depths, self.orig_size, self.gt_dense)
        p_pts = _pred_for_points(self.pred, tg, self.settings.sampling, self.image_size)
        # The model's map decides which points count, for both rows alike.
        inside = points_inside(tg.coords, p_pts.shape)
        ans_in = [a for a, k in zip(answers.metres, inside) if k]
        pv, gv = sample_points(p_pts, tg)
        for proto in self.settings.protocols:
            tally.rows[proto]["depthlm"].add(name, point_metrics(ans_in, gv), order=self.order)
            tally.rows[proto]["model@points"].add(name, image_metrics(pv, gv),
                                                  order=self.order)

    def sample(self) -> bool:
        """Keep the record as a report sample; False when it has no dense GT to show."""
        if self.gt_dense is None:
            return False
        p_grid, g_grid = self._dense()
        self.tally.samples.append(Sample(self.spec.name, self.rec.stem,
                                         _downsize(_rgb_on_grid(self.rgb, g_grid.shape)),
                                         _downsize(g_grid), _downsize(p_grid),
                                         self.dataset_index, self.order))
        return True


def _settings(datasets: Sequence[DatasetSpec], depth_fn: DepthFn | None,
              predictions: str | os.PathLike | None, protocols: Sequence[str],
              point_fn: PointFn | None, depthlm_points: int, strict_range: bool,
              sparse_sampling: str) -> _Settings:
    """Validate :func:`run_benchmark`'s arguments."""
    if (depth_fn is None) == (predictions is None):
        raise ConfigError("give exactly one of depth_fn and predictions")
    protocols = tuple(dict.fromkeys(protocols))
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ConfigError(f"protocols must be among {list(PROTOCOLS)}, got {list(protocols)}")
    if sparse_sampling not in SPARSE_SAMPLING:
        raise ConfigError(f"sparse_sampling must be one of {list(SPARSE_SAMPLING)}, "
                          f"got {sparse_sampling!r}")
    if depthlm_points < 0:
        raise ConfigError("depthlm_points must be >= 0")
    if not datasets:
        raise ConfigError("no datasets to evaluate")
    names = [s.name for s in datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset names must be unique, got {names}")
    # Saved maps are the authors' kind of output (indexed raw); our depth_fn answers at the
    # input resolution, which only a resize brings to the canonical grid the points live on.
    sampling = sparse_sampling if sparse_sampling != "auto" else (
        "raw" if predictions is not None else "resize")
    use_depthlm = point_fn is not None and depthlm_points > 0
    return _Settings(protocols, sampling, strict_range, point_fn if use_depthlm else None,
                     depthlm_points)


def run_benchmark(datasets: Sequence[DatasetSpec], *, depth_fn: DepthFn | None = None,
                  predictions: str | os.PathLike | None = None,
                  protocols: Sequence[str] = ("auto",), limit: int | None = None,
                  point_fn: PointFn | None = None, depthlm_points: int = 0,
                  constant_baseline: bool = True, model_name: str = "model",
                  n_samples: int = 2, progress: bool = True,
                  strict_range: bool = False, sparse_sampling: str = "auto") -> BenchResult:
    """Evaluate a depth model and the baselines on the given test sets.

    Args:
        datasets: the test sets.
        depth_fn: ``depth_fn(rgb uint8 (H, W, 3), intrinsics) -> (H, W) float32 metres`` at the
            input image's resolution.
        predictions: folder of saved ``.npy`` predictions (instead of ``depth_fn``).
        protocols: any of :data:`PROTOCOLS`; ``auto`` (the default) is the authors' rule.
        limit: at most this many images per dataset.
        point_fn: per-point VLM ``point_fn(rgb_with_marker, intrinsics, (u, v)) -> metres``
            (a float, None, or an answer string that is parsed with
            :func:`~.answers.parse_metres`).
        depthlm_points: points asked per image (0 disables the per-point baseline).
        constant_baseline: add the ``const_median`` row.
        model_name: label of the model in reports.
        n_samples: sample images kept per dataset for the report.
        progress: show a tqdm progress bar.
        strict_range: also drop sparse GT fall-back values outside the dataset range (the
            reference keeps them; see :func:`.metrics.sparse_targets`).
        sparse_sampling: ``raw``, ``resize`` or ``auto`` (raw for ``predictions``, resize for
            ``depth_fn``); see :data:`SPARSE_SAMPLING`.

    Returns:
        The :class:`BenchResult`.

    Raises:
        ConfigError: bad arguments.
        AnnotationError: bad annotation, image, depth or prediction file.
    """
    from tqdm import tqdm

    settings = _settings(datasets, depth_fn, predictions, protocols, point_fn, depthlm_points,
                         strict_range, sparse_sampling)
    load_pred = predictions_from_dir(predictions) if predictions is not None else None
    tally = Tally(settings.protocols)
    ds_meta: dict[str, dict] = {}
    t_start = time.perf_counter()

    env = init_distributed(device="cpu")  # a process group only under torchrun
    rank_tag = f" [rank {env.rank}/{env.world_size}]" if env.distributed else ""
    for ds_index, spec in enumerate(datasets):
        records = read_jsonl(spec.jsonl, image_root=spec.image_root, depth_root=spec.depth_root)
        # Our synthetic files add spatial-QA lines (qa_type other than dense_depth) that reuse
        # an image already scored by its dense line; scoring them again would count that image
        # several times. The authors' files have no qa_type, so every line stays.
        records = [r for r in records if r.qa_type not in SYNTHETIC_QA_TYPES]
        if limit is not None:
            records = records[:limit]
        # Every rank computes the set-wide constant from all records: the same on each.
        const, const_source = _constant(records, spec) if constant_baseline else (None, None)
        ds_meta[spec.name] = {"jsonl": str(spec.jsonl), "domain": spec.domain,
                              "extra": spec.extra, "in_group_averages": not spec.extra,
                              "min_depth": spec.min_depth,
                              "max_depth": None if math.isinf(spec.max_depth) else spec.max_depth,
                              "n_records": len(records), "constant_m": const,
                              "constant_source": const_source}
        tally.start_dataset(spec.name)
        kept = 0
        mine = shard_indices(len(records), env)
        bar = tqdm(mine, desc=spec.name + rank_tag, unit="img", disable=not progress,
                   leave=False, position=env.rank)
        for index in bar:
            rec = records[index]
            rgb = load_rgb(rec)
            h, w = rgb.shape[:2]
            intr = record_intrinsics(rec, w, h)
            t0 = time.perf_counter()
            pred = load_pred(rec, spec.name) if load_pred is not None else depth_fn(rgb, intr)
            tally.model_times[spec.name].append(time.perf_counter() - t0)
            scorer = _RecordScorer(tally, settings, spec, rec, rgb, intr,
                                   _check_pred(pred, rec.source), const, index, ds_index)
            scorer.score()
            if settings.point_fn is not None:
                scorer.score_depthlm()
            if kept < n_samples and scorer.sample():
                kept += 1
        bar.close()

    tallies = gather_to_main(tally, env)
    if tallies is None:
        return BenchResult({}, [], is_main=False)
    tally = tallies[0]
    for other in tallies[1:]:
        tally.merge(other, n_samples)
    wall = time.perf_counter() - t_start
    return BenchResult(_results_document(tally, settings, datasets, ds_meta, wall, model_name,
                                         sparse_sampling, predictions is not None, limit,
                                         env.world_size),
                       tally.samples)


def _results_document(tally: Tally, settings: _Settings, datasets: Sequence[DatasetSpec],
                      ds_meta: dict[str, dict], wall: float, model_name: str,
                      sparse_sampling: str, saved: bool, limit: int | None,
                      processes: int = 1) -> dict:
    """The ``results.json`` document: metadata, then results and depth bins per protocol."""
    use_depthlm = settings.point_fn is not None
    results = {
        "metadata": {
            "model": model_name,
            "protocols": list(settings.protocols),
            "protocol_definitions": {p: PROTOCOL_DEFINITIONS[p] for p in settings.protocols},
            "sparse_sampling": {"requested": sparse_sampling, "used": settings.sampling,
                                "definition": SPARSE_SAMPLING[settings.sampling]},
            "prediction_source": "saved .npy" if saved else "depth_fn",
            "metric_provenance": METRIC_PROVENANCE,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "limit": limit,
            "processes": processes,
            "depthlm_points": settings.depthlm_points if use_depthlm else 0,
            "strict_range": settings.strict_range,
            "definitions": dict(METRIC_DEFINITIONS,
                                baselines={k: v for k, v in ROWS.items() if k != "model"}),
            "datasets": ds_meta,
            "skipped": tally.skipped,
            "timings": _timings(tally.model_times, tally.point_times, tally.point_image_times,
                                wall),
            "depthlm_parse_failures": tally.parse_fail if use_depthlm else None,
        },
        "results": {},
        "depth_bins": {},
    }
    for proto, rset in tally.rows.items():
        results["results"][proto] = {}
        results["depth_bins"][proto] = {}
        for row_name, row in rset.items():
            if not row.images:
                continue
            label = model_name if row_name == "model" else row_name
            results["results"][proto][label] = row.summary(datasets)
            if row.bins:
                results["depth_bins"][proto][label] = {k: b.as_dict() for k, b in row.bins.items()}
    return results


def _stats(values: Sequence[float]) -> dict:
    if not values:
        return {"n": 0, "mean_s": None, "median_s": None, "total_s": 0.0}
    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "mean_s": float(a.mean()), "median_s": float(np.median(a)),
            "total_s": float(a.sum())}


def _timings(model: Mapping[str, list[float]], point: Mapping[str, list[float]],
             point_img: Mapping[str, list[float]], wall: float) -> dict:
    all_model = [t for v in model.values() for t in v]
    all_point = [t for v in point.values() for t in v]
    all_pimg = [t for v in point_img.values() for t in v]
    return {
        "wall_s": wall,
        "model_per_image": _stats(all_model),
        "model_per_image_by_dataset": {k: _stats(v) for k, v in model.items()},
        "depthlm_per_image": _stats(all_pimg),
        "depthlm_per_point": _stats(all_point),
        "depthlm_per_point_by_dataset": {k: _stats(v) for k, v in point.items() if v},
    }
