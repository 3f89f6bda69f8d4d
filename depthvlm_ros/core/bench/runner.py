"""Run DepthVLM-Bench: a depth model (or saved predictions) and reference baselines.

What is evaluated:

* the model: a callable ``depth_fn(rgb, intrinsics) -> depth`` (metres, NaN invalid), or a
  folder of saved ``<image stem>.npy`` depth maps from any other model;
* ``const_median``: one constant depth per dataset, the dataset's ``train_median_m`` from the
  config when given, otherwise the median of the pooled valid GT of the whole test set (one
  number per dataset, never a per-image value);
* ``depthlm`` (optional): a DepthLM-style per-point VLM, ``point_fn(rgb_with_marker,
  intrinsics, (u, v)) -> metres``, asked once per point with a marker drawn on the image, and
  ``model@points``: the dense model scored on exactly the same points, so accuracy and cost
  compare like for like.

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
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..camera import Intrinsics
from ..frames import record_intrinsics
from ..errors import AnnotationError, ConfigError, InputError
from .jsonl import BenchRecord, apply_gt_masks, load_gt_depth, load_rgb, read_jsonl
from .metrics import (METRIC_DEFINITIONS, METRIC_PROVENANCE, DepthBins,
                      ImageMetrics, SparseTargets, aggregate, apply_depth_range, dense_pair,
                      group_average, image_metrics, points_inside, resize_linear, resize_nearest,
                      sample_points, sparse_targets)

__all__ = [
    "DatasetSpec",
    "AUTHOR_DATASETS",
    "SYNTHETIC_DATASETS",
    "DEPTHLM_QUESTION",
    "PROTOCOLS",
    "PROTOCOL_DEFINITIONS",
    "SPARSE_SAMPLING",
    "DepthFn",
    "PointFn",
    "Sample",
    "BenchResult",
    "spec_for_jsonl",
    "load_dataset_config",
    "predictions_from_dir",
    "draw_marker",
    "parse_metres",
    "point_metrics",
    "run_benchmark",
]

DepthFn = Callable[[np.ndarray, Intrinsics], np.ndarray]
PointFn = Callable[[np.ndarray, Intrinsics, tuple[int, int]], Any]

#: The question the per-point baseline asks (the model engineer's callable may use it).
DEPTHLM_QUESTION = ("How far from the camera is the point marked by the red circle, in metres? "
                    "Answer with a single number.")

#: The authors' per-dataset GT ranges (utils/datasets.py, DATASET_CONFIGS, in its order: the
#: first key found in the path wins, as in their _match_dataset_config) and the grouping of
#: configs/eval_datasets.conf (ETH3D has its own section there: it mixes indoor and outdoor
#: scenes, so it counts in "overall" only). Matched by substring of the JSONL path when a file
#: is given without a config. taskonomy and hm3d are left out: the authors also centre-crop
#: them (max_canonical_edge), which this runner does not reproduce.
AUTHOR_DATASETS: dict[str, dict[str, Any]] = {
    "argoverse": {"min_depth": 0.05, "max_depth": 120.0, "domain": "outdoor"},
    "waymo": {"min_depth": 0.05, "max_depth": 70.0, "domain": "outdoor"},
    "nuscenes": {"min_depth": 0.05, "max_depth": 80.0, "domain": "outdoor"},
    "ddad": {"min_depth": 0.05, "max_depth": 120.0, "domain": "outdoor"},
    "scannetpp": {"min_depth": 0.001, "max_depth": 10.0, "domain": "indoor"},
    "matterport": {"min_depth": 0.01, "max_depth": 10.0, "domain": "indoor"},
    "sunrgbd": {"min_depth": 0.005, "max_depth": 8.0, "domain": "indoor"},
    "ibims": {"min_depth": 0.005, "max_depth": 25.0, "domain": "indoor"},
    "nyuv2": {"min_depth": 0.005, "max_depth": 10.0, "domain": "indoor"},
    "eth3d": {"min_depth": 0.01, "max_depth": 50.0, "domain": "mixed"},
}

#: Our synthetic scenes (``depthvlm make-synthetic``): not part of the paper's benchmark, so they
#: are ``extra`` sets (run only when named, never in the indoor / outdoor / overall means).
SYNTHETIC_DATASETS: dict[str, dict[str, Any]] = {
    "synthetic_indoor": {"min_depth": 0.05, "max_depth": 20.0, "domain": "indoor"},
    "synthetic_outdoor": {"min_depth": 0.05, "max_depth": 120.0, "domain": "outdoor"},
}

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

_DOMAINS = ("indoor", "outdoor", "mixed", "unknown")


@dataclass(frozen=True)
class DatasetSpec:
    """One test set.

    Attributes:
        name: label in reports.
        jsonl: annotation file.
        domain: ``indoor``, ``outdoor``, ``mixed`` (overall only) or ``unknown``.
        min_depth, max_depth: GT range in metres; GT outside it is invalid.
        image_root, depth_root: folders the paths in the file are relative to (default: its
            folder).
        train_median_m: constant for the ``const_median`` baseline, from the training split.
        extra: not one of the paper's test sets (our synthetic scenes): chosen only by name and
            left out of the indoor / outdoor / overall means.
    """

    name: str
    jsonl: Path
    domain: str = "unknown"
    min_depth: float = 0.0
    max_depth: float = math.inf
    image_root: Path | None = None
    depth_root: Path | None = None
    train_median_m: float | None = None
    extra: bool = False


def spec_for_jsonl(path: str | os.PathLike, name: str | None = None) -> DatasetSpec:
    """A spec for a bare JSONL path: range and domain matched by substring, like the authors.

    Args:
        path: annotation file.
        name: label; defaults to the matched dataset key, else the file stem.
    """
    p = Path(path)
    low = str(p).lower()
    # Our synthetic names first (they are specific), then the authors' keys in their order.
    for key, cfg in list(SYNTHETIC_DATASETS.items()) + list(AUTHOR_DATASETS.items()):
        if key in low:
            return DatasetSpec(name or key, p, cfg["domain"], cfg["min_depth"], cfg["max_depth"],
                               extra=key in SYNTHETIC_DATASETS)
    return DatasetSpec(name or p.stem, p)


def _float(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ConfigError(f"{what} must be a number, got {v!r}")
    try:
        return float(v)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {v!r}") from None


def load_dataset_config(path: str | os.PathLike,
                        names: Sequence[str] | None = None) -> list[DatasetSpec]:
    """Read ``config/eval_datasets.yaml``.

    Relative paths are resolved against ``root`` (itself relative to the YAML's folder).
    Datasets marked ``extra: true`` (our synthetic sets) are loaded only when named.

    Args:
        path: the YAML file.
        names: keep only these datasets (in this order); None keeps every dataset that is not
            ``extra`` (the paper's nine test sets in the shipped config).

    Raises:
        ConfigError: unreadable file, unknown dataset name or bad field.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'datasets' mapping")
    root = Path(os.path.expanduser(str(doc.get("root") or ".")))
    if not root.is_absolute():
        root = path.parent / root

    def rel(v: Any) -> Path | None:
        if v in (None, ""):
            return None
        q = Path(os.path.expanduser(str(v)))
        return q if q.is_absolute() else root / q

    specs = {}
    for name, d in doc["datasets"].items():
        if not isinstance(d, dict) or "jsonl" not in d:
            raise ConfigError(f"{path}: dataset '{name}' needs a 'jsonl' entry")
        domain = d.get("domain", "unknown")
        if domain not in _DOMAINS:
            raise ConfigError(f"{path}: dataset '{name}': domain must be one of {_DOMAINS}")
        tm = d.get("train_median_m")
        extra = d.get("extra", False)
        if not isinstance(extra, bool):
            raise ConfigError(f"{path}: dataset '{name}': extra must be true or false")
        specs[str(name)] = DatasetSpec(
            name=str(name), jsonl=rel(d["jsonl"]), domain=domain,
            min_depth=_float(d.get("min_depth", 0.0), f"{name}.min_depth"),
            max_depth=_float(d.get("max_depth", math.inf), f"{name}.max_depth"),
            image_root=rel(d.get("image_root")), depth_root=rel(d.get("depth_root")),
            train_median_m=None if tm is None else _float(tm, f"{name}.train_median_m"),
            extra=extra)
    if names is None:
        return [s for s in specs.values() if not s.extra]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ConfigError(f"{path}: unknown dataset(s) {', '.join(unknown)}; "
                          f"known: {', '.join(specs)}")
    return [specs[n] for n in names]


def predictions_from_dir(folder: str | os.PathLike) -> Callable[[BenchRecord, str], np.ndarray]:
    """A predictor reading ``<folder>/<dataset>/<stem>.npy`` or ``<folder>/<stem>.npy``.

    The arrays are (H, W) depth in metres, treated like the authors' saved ``_pred.npy``: the
    dense protocol resizes them to the GT grid, the sparse protocol indexes them as given at the
    canonical-grid coordinates (so save them at the canonical scale, as the authors' model
    predicts, or pass ``sparse_sampling="resize"``); NaN, 0 and negative values are invalid.

    Raises:
        AnnotationError: (when called) the prediction file is missing or not a 2-D array.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"predictions folder not found: {root}")

    def load(record: BenchRecord, dataset: str) -> np.ndarray:
        for cand in (root / dataset / f"{record.stem}.npy", root / f"{record.stem}.npy"):
            if cand.is_file():
                try:
                    arr = np.load(cand, allow_pickle=False)
                except (OSError, ValueError) as exc:
                    raise AnnotationError(f"{cand}: cannot read prediction: {exc}") from None
                arr = np.squeeze(arr)
                if arr.ndim != 2:
                    raise AnnotationError(f"{cand}: prediction must be 2-D, got {arr.shape}")
                return arr.astype(np.float32)
        raise AnnotationError(f"{record.source}: no prediction {record.stem}.npy in {root} "
                              f"or {root / dataset}")

    return load


# ----------------------------------------------------------------------------------------------
# DepthLM-style per-point baseline
# ----------------------------------------------------------------------------------------------

def draw_marker(rgb: np.ndarray, u: float, v: float, radius: int | None = None,
                color: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    """A copy of ``rgb`` with a ring marker centred on pixel ``(u, v)`` = (col, row).

    The ring (``color``, with a thin white outline so it shows on red surfaces too) leaves the
    marked pixel itself visible. The radius defaults to 1.5 % of the shorter side, at least 4.

    Args:
        rgb: (H, W, 3) uint8.
        u, v: column and row.
        radius: ring radius in pixels.
        color: ring colour.
    """
    img = np.array(rgb, dtype=np.uint8, copy=True)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    r = float(radius if radius is not None else max(4, round(0.015 * min(h, w))))
    t = max(1.0, r / 4.0)  # ring thickness
    pad = int(math.ceil(r + t + 2))
    r0, r1 = max(0, int(v) - pad), min(h, int(v) + pad + 1)
    c0, c1 = max(0, int(u) - pad), min(w, int(u) + pad + 1)
    if r0 >= r1 or c0 >= c1:
        return img
    yy, xx = np.mgrid[r0:r1, c0:c1]
    dist = np.hypot(xx - u, yy - v)
    ring = np.abs(dist - r) <= t / 2
    halo = (np.abs(dist - r) <= t / 2 + 1) & ~ring
    patch = img[r0:r1, c0:c1]
    patch[halo] = (255, 255, 255)
    patch[ring] = color
    return img


_UNITS = {
    "mm": 0.001, "millimeter": 0.001, "millimeters": 0.001, "millimetre": 0.001,
    "millimetres": 0.001,
    "cm": 0.01, "centimeter": 0.01, "centimeters": 0.01, "centimetre": 0.01, "centimetres": 0.01,
    "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
    "km": 1000.0, "kilometer": 1000.0, "kilometers": 1000.0, "kilometre": 1000.0,
    "kilometres": 1000.0,
    "ft": 0.3048, "foot": 0.3048, "feet": 0.3048,
}
# A number: 1,234.5 (thousands groups) | 1,5 (decimal comma) | 1.5 | .5 | 15; then a unit.
_NUM = r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+,\d+|\d+(?:\.\d+)?|\.\d+)(?![\d])"
_NUM_UNIT = re.compile(_NUM + r"\s*(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
                       + r")\b", re.IGNORECASE)
_NUM_ONLY = re.compile(_NUM)


def _to_float(tok: str) -> float:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", tok):
        return float(tok.replace(",", ""))
    return float(tok.replace(",", "."))


def parse_metres(text: Any) -> float | None:
    """Depth in metres from a free-text answer, or None.

    A number followed by a unit (m, metres, cm, mm, km, ft ...) is preferred over a bare
    number, so "point 1 is 2.3 m away" gives 2.3. ``1,5`` is a decimal comma (1.5);
    ``1,500`` is a thousands separator (1500). Negative, zero and non-finite values give None.

    Args:
        text: the model's answer.

    Returns:
        Metres, or None when no usable number is found.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.replace("\u2212", "-")
    m = _NUM_UNIT.search(s)
    if m:
        value, start = _to_float(m.group(1)) * _UNITS[m.group(2).lower()], m.start(1)
    else:
        m = _NUM_ONLY.search(s)
        if not m:
            return None
        value, start = _to_float(m.group(1)), m.start(1)
    if start > 0 and s[start - 1] == "-":
        return None  # negative distance: not a usable answer
    if not math.isfinite(value) or value <= 0:
        return None
    return value


def point_metrics(answers: Sequence[float | None], gt: Sequence[float]) -> ImageMetrics:
    """Metrics of one image's per-point answers.

    Points whose GT is invalid (<= 0) are ignored. Unlike the dense rule (where a prediction
    <= 0 is excluded), an unusable answer (None) counts as wrong for the δ's: a VLM should not
    gain accuracy by refusing to answer. Error metrics use the answered points only.
    """
    a = np.array([np.nan if x is None else float(x) for x in answers], dtype=np.float32)
    g = np.asarray(gt, dtype=np.float32)
    use = g > 0
    a, g = a[use], g[use]
    n = int(use.sum())
    if n == 0:
        return ImageMetrics(0.0, 0.0, 0.0, math.nan, math.nan, math.nan, 0)
    answered = np.isfinite(a) & (a > 0)
    ratio = np.full(n, np.inf, dtype=np.float32)
    ratio[answered] = np.maximum(a[answered] / g[answered], g[answered] / a[answered])
    d = [float((ratio < t).mean()) for t in (1.25, 1.25 ** 2, 1.25 ** 3)]
    if answered.any():
        sub = image_metrics(a[answered], g[answered])
        return ImageMetrics(d[0], d[1], d[2], sub.abs_rel, sub.rmse, sub.silog, n)
    return ImageMetrics(d[0], d[1], d[2], math.nan, math.nan, math.nan, n)


# ----------------------------------------------------------------------------------------------
# Runner
# ----------------------------------------------------------------------------------------------

@dataclass
class Sample:
    """A downsized image with its GT and predictions on the evaluation grid, for reports."""

    dataset: str
    name: str
    rgb: np.ndarray
    gt: np.ndarray
    pred: np.ndarray


@dataclass
class BenchResult:
    """Everything a report needs: the ``results.json`` document and sample images."""

    results: dict
    samples: list[Sample] = field(default_factory=list)


class _Row:
    """Per-dataset image metrics and depth bins for one row (model or baseline) of one protocol."""

    def __init__(self) -> None:
        self.images: dict[str, list[ImageMetrics]] = {}
        self.bins: dict[str, DepthBins] = {}
        self.scored_as: dict[str, dict[str, int]] = {}

    def add(self, ds: str, m: ImageMetrics, pred: np.ndarray | None = None,
            gt: np.ndarray | None = None, mode: str = "sparse") -> None:
        self.images.setdefault(ds, []).append(m)
        counts = self.scored_as.setdefault(ds, {"sparse": 0, "dense": 0})
        counts[mode] += 1
        if pred is not None:
            self.bins.setdefault(ds, DepthBins()).add(pred, gt)

    def summary(self, specs: Sequence[DatasetSpec]) -> dict:
        per = {s.name: aggregate(self.images[s.name]) for s in specs if s.name in self.images}
        out: dict[str, Any] = {"datasets": {}}
        for k, v in per.items():
            # Which protocol each image of the dataset was scored with (auto mixes them).
            out["datasets"][k] = dict(v.as_dict(), scored_as=dict(self.scored_as[k]))
        # Group means cover the real test sets only: an extra (synthetic) set would shift the
        # indoor / outdoor / overall numbers away from the paper's definition.
        real = [s for s in specs if not s.extra]
        for group, members in (("indoor", [s.name for s in real if s.domain == "indoor"]),
                               ("outdoor", [s.name for s in real if s.domain == "outdoor"]),
                               ("overall", [s.name for s in real])):
            g = group_average(per, members)
            out[group] = g.as_dict() if g is not None else None
        return out


def _downsize(a: np.ndarray, max_side: int = 320) -> np.ndarray:
    h, w = a.shape[:2]
    s = max(h, w) / max_side
    if s <= 1:
        return a
    size = (max(1, round(w / s)), max(1, round(h / s)))
    if a.ndim == 3:
        return np.stack([resize_nearest(a[..., c], size) for c in range(a.shape[2])], axis=-1)
    return resize_nearest(a, size)


def _seed(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _pooled_median(records: Sequence[BenchRecord], spec: DatasetSpec) -> float:
    """Median of valid GT over a whole test set (a subsample of each map, fixed seed)."""
    chunks = []
    for rec in records:
        gt = load_gt_depth(rec)
        if gt is not None:
            v = apply_depth_range(gt, spec.min_depth, spec.max_depth)
            v = v[v > 0]
            if v.size > 4096:
                v = np.random.default_rng(_seed(rec.source)).choice(v, 4096, replace=False)
        else:
            v = np.asarray(rec.depth, dtype=np.float32)
            v = v[(v > 0) & (v >= spec.min_depth) & (v <= spec.max_depth)]
        chunks.append(v)
    pooled = np.concatenate(chunks) if chunks else np.zeros(0)
    return float(np.median(pooled)) if pooled.size else 1.0


def _depthlm_points(rec: BenchRecord, gt_capped: np.ndarray | None, size: tuple[int, int],
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points (original RGB [col, row]) and annotation depths the per-point baseline is asked."""
    if rec.has_points:
        coords = np.asarray(rec.pixel_coords[:n], dtype=np.float64)
        return coords, np.asarray(rec.depth[:n], dtype=np.float32)
    if gt_capped is None:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.float32)
    rows, cols = np.nonzero(gt_capped > 0)
    if rows.size == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.float32)
    pick = np.random.default_rng(_seed(rec.source)).choice(rows.size, min(n, rows.size),
                                                            replace=False)
    gh, gw = gt_capped.shape
    w, h = size
    # GT pixel centre -> RGB pixel (the maps may differ in resolution, e.g. ScanNet++).
    u = np.round((cols[pick] + 0.5) * w / gw - 0.5)
    v = np.round((rows[pick] + 0.5) * h / gh - 0.5)
    return np.stack([u, v], axis=1), gt_capped[rows[pick], cols[pick]].astype(np.float32)


def _as_metres(answer: Any) -> float | None:
    if answer is None:
        return None
    if isinstance(answer, str):
        return parse_metres(answer)
    try:
        v = float(answer)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _check_pred(pred: Any, where: str) -> np.ndarray:
    arr = np.squeeze(np.asarray(pred, dtype=np.float32))
    if arr.ndim != 2:
        raise InputError(f"{where}: the model returned depth of shape {arr.shape}, expected (H, W)")
    return arr


#: qa_type labels of our generator's spatial-QA lines (see bench.synthetic.QA_TYPES).
SYNTHETIC_QA_TYPES = frozenset({"point_depth", "region_mean", "region_median", "nearer",
                                "distance_3d"})


def _pred_for_points(pred: np.ndarray, tg: SparseTargets, sampling: str,
                     image_size: tuple[int, int]) -> np.ndarray:
    """The map the sparse points are read from (see :data:`SPARSE_SAMPLING`)."""
    if sampling == "raw":
        return pred  # the authors' pred_map[y, x], whatever its grid
    return resize_linear(pred, tg.grid_size or image_size)


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
            (a float, None, or an answer string that is parsed with :func:`parse_metres`).
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
    load_pred = predictions_from_dir(predictions) if predictions is not None else None

    rows = {p: {"model": _Row(), "const_median": _Row(), "depthlm": _Row(), "model@points": _Row()}
            for p in protocols}
    samples: list[Sample] = []
    model_times: dict[str, list[float]] = {}
    point_times: dict[str, list[float]] = {}
    point_image_times: dict[str, list[float]] = {}
    parse_fail = {"asked": 0, "failed": 0}
    ds_meta: dict[str, dict] = {}
    skipped: dict[str, dict[str, int]] = {}
    t_start = time.perf_counter()

    for spec in datasets:
        records = read_jsonl(spec.jsonl, image_root=spec.image_root, depth_root=spec.depth_root)
        # Our synthetic files add spatial-QA lines (qa_type other than dense_depth) that reuse
        # an image already scored by its dense line; scoring them again would count that image
        # several times. The authors' files have no qa_type, so every line stays.
        records = [r for r in records if r.qa_type not in SYNTHETIC_QA_TYPES]
        if limit is not None:
            records = records[:limit]
        const = None
        const_source = None
        if constant_baseline:
            if spec.train_median_m is not None:
                const, const_source = float(spec.train_median_m), "train_median_m (config)"
            else:
                const, const_source = _pooled_median(records, spec), "median of pooled test GT"
        ds_meta[spec.name] = {"jsonl": str(spec.jsonl), "domain": spec.domain,
                              "extra": spec.extra, "in_group_averages": not spec.extra,
                              "min_depth": spec.min_depth,
                              "max_depth": None if math.isinf(spec.max_depth) else spec.max_depth,
                              "n_records": len(records), "constant_m": const,
                              "constant_source": const_source}
        skipped[spec.name] = {"dense_no_gt_map": 0, "sparse_no_points": 0}
        model_times[spec.name], point_times[spec.name], point_image_times[spec.name] = [], [], []
        kept = 0
        bar = tqdm(records, desc=spec.name, unit="img", disable=not progress, leave=False)
        for rec in bar:
            rgb = load_rgb(rec)
            h, w = rgb.shape[:2]
            intr = record_intrinsics(rec, w, h)
            t0 = time.perf_counter()
            if load_pred is not None:
                pred = load_pred(rec, spec.name)
            else:
                pred = depth_fn(rgb, intr)
            model_times[spec.name].append(time.perf_counter() - t0)
            pred = _check_pred(pred, rec.source)
            # The authors' sparse branch loads GT without the iBims-1 masks, their dense branch
            # with them: keep one unmasked and one masked copy (the same array when no mask).
            gt_native = load_gt_depth(rec, masks=False)
            gt_sparse = gt_dense = None
            if gt_native is not None:
                gt_sparse = apply_depth_range(gt_native, spec.min_depth, spec.max_depth)
                masked = apply_gt_masks(rec, gt_native)
                gt_dense = (gt_sparse if masked is gt_native else
                            apply_depth_range(masked, spec.min_depth, spec.max_depth))
            # Marker / intrinsics grid; the sparse coordinates use rec.original_rgb_size as is.
            orig_size = rec.original_rgb_size or (w, h)
            # An all-invalid GT map is "no map" for the points (the reference's loader returns
            # None there and its sparse branch then fails; we use the annotation values).
            gt_for_points = gt_sparse if gt_sparse is not None and (gt_sparse > 0).any() else None

            dense_grid = None
            sparse_vals = None

            def score_dense(proto: str) -> None:
                nonlocal dense_grid
                if gt_dense is None:
                    skipped[spec.name]["dense_no_gt_map"] += 1
                    return
                if dense_grid is None:
                    dense_grid = dense_pair(pred, gt_dense, rec.canonical_size)
                p_grid, g_grid = dense_grid
                rows[proto]["model"].add(spec.name, image_metrics(p_grid, g_grid), p_grid, g_grid,
                                         mode="dense")
                if const is not None:
                    c_map = np.full_like(g_grid, const)
                    rows[proto]["const_median"].add(spec.name, image_metrics(c_map, g_grid),
                                                    c_map, g_grid, mode="dense")

            def score_sparse(proto: str) -> None:
                nonlocal sparse_vals
                if not rec.has_points:
                    skipped[spec.name]["sparse_no_points"] += 1
                    return
                if sparse_vals is None:
                    tg = sparse_targets(rec.pixel_coords, rec.depth, rec.original_rgb_size,
                                        rec.canonical_size, gt_for_points, spec.min_depth,
                                        spec.max_depth, strict_range)
                    sparse_vals = sample_points(_pred_for_points(pred, tg, sampling, (w, h)), tg)
                pv, gv = sparse_vals
                rows[proto]["model"].add(spec.name, image_metrics(pv, gv), pv, gv, mode="sparse")
                if const is not None:
                    cv = np.full_like(gv, const)
                    rows[proto]["const_median"].add(spec.name, image_metrics(cv, gv), cv, gv,
                                                    mode="sparse")

            for proto in protocols:
                mode = proto if proto != "auto" else ("sparse" if rec.has_points else "dense")
                (score_sparse if mode == "sparse" else score_dense)(proto)

            if use_depthlm:
                coords, depths = _depthlm_points(rec, gt_dense, orig_size, depthlm_points)
                if len(coords):
                    # Marker coordinates: annotation pixels -> loaded image pixels.
                    su, sv = w / orig_size[0], h / orig_size[1]
                    answers, t_img = [], 0.0
                    for (cu, cv_) in coords:
                        uv = (int(round(cu * su)), int(round(cv_ * sv)))
                        marked = draw_marker(rgb, uv[0], uv[1])
                        t1 = time.perf_counter()
                        ans = point_fn(marked, intr, uv)
                        dt = time.perf_counter() - t1
                        t_img += dt
                        point_times[spec.name].append(dt)
                        val = _as_metres(ans)
                        parse_fail["asked"] += 1
                        parse_fail["failed"] += val is None
                        answers.append(val)
                    point_image_times[spec.name].append(t_img)
                    if rec.has_points:
                        # The annotated points: exactly the sparse protocol's targets.
                        tg = sparse_targets(coords, depths, rec.original_rgb_size,
                                            rec.canonical_size, gt_for_points, spec.min_depth,
                                            spec.max_depth, strict_range)
                    else:
                        # Points drawn from the (masked) dense map, in image pixels.
                        tg = sparse_targets(coords, depths, orig_size, rec.canonical_size,
                                            gt_dense, spec.min_depth, spec.max_depth, strict_range)
                    p_pts = _pred_for_points(pred, tg, sampling, (w, h))
                    # The model's map decides which points count, for both rows alike.
                    ans_in = [a for a, k in zip(answers, points_inside(tg.coords, p_pts.shape)) if k]
                    pv, gv = sample_points(p_pts, tg)
                    for proto in protocols:
                        rows[proto]["depthlm"].add(spec.name, point_metrics(ans_in, gv))
                        rows[proto]["model@points"].add(spec.name, image_metrics(pv, gv))

            if kept < n_samples:
                if dense_grid is None and gt_dense is not None:
                    dense_grid = dense_pair(pred, gt_dense, rec.canonical_size)
                if dense_grid is not None:
                    g = dense_grid[1]
                    samples.append(Sample(spec.name, rec.stem,
                                          _downsize(_rgb_on_grid(rgb, g.shape)),
                                          _downsize(g), _downsize(dense_grid[0])))
                    kept += 1
        bar.close()

    wall = time.perf_counter() - t_start
    results = {
        "metadata": {
            "model": model_name,
            "protocols": list(protocols),
            "protocol_definitions": {p: PROTOCOL_DEFINITIONS[p] for p in protocols},
            "sparse_sampling": {"requested": sparse_sampling, "used": sampling,
                                "definition": SPARSE_SAMPLING[sampling]},
            "prediction_source": "saved .npy" if predictions is not None else "depth_fn",
            "metric_provenance": METRIC_PROVENANCE,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "limit": limit,
            "depthlm_points": depthlm_points if use_depthlm else 0,
            "strict_range": strict_range,
            "definitions": dict(METRIC_DEFINITIONS, baselines={
                "const_median": "one constant depth per dataset: train_median_m from the config "
                                "when set, else the median of the pooled valid test GT (a "
                                "dataset-level prior, never per image)",
                "depthlm": "DepthLM-style VLM asked one question per point with a marker drawn "
                           "on the image; unusable answers count as wrong for the deltas",
                "model@points": "the evaluated model scored on the same points as depthlm",
            }),
            "datasets": ds_meta,
            "skipped": skipped,
            "timings": _timings(model_times, point_times, point_image_times, wall),
            "depthlm_parse_failures": parse_fail if use_depthlm else None,
        },
        "results": {},
        "depth_bins": {},
    }
    for proto, rset in rows.items():
        results["results"][proto] = {}
        results["depth_bins"][proto] = {}
        for row_name, row in rset.items():
            if not row.images:
                continue
            label = model_name if row_name == "model" else row_name
            results["results"][proto][label] = row.summary(datasets)
            if row.bins:
                results["depth_bins"][proto][label] = {k: b.as_dict() for k, b in row.bins.items()}
    return BenchResult(results, samples)


def _rgb_on_grid(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == shape:
        return rgb
    return np.stack([resize_nearest(rgb[..., c], (shape[1], shape[0])) for c in range(3)], axis=-1)


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
