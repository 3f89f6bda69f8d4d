"""Depth metrics with the DepthVLM authors' evaluation arithmetic.

The reference is the authors' ``eval/eval.py`` and ``utils/datasets.py`` (hanxunyu/DepthVLM):

* Which protocol: a record with ``pixel_coords`` and ``depth`` is scored with the sparse
  protocol only; a record without points is scored dense (eval.py's ``if pixel_coords ...:
  elif gt_map ...``). The runner's ``auto`` protocol is that rule.
* GT depth is read in metres (``raw / depth_scale``), values outside the dataset's
  ``[min_depth, max_depth]`` are set to 0 (= invalid), and the map is resized to
  ``canonical_size`` with OpenCV's ``INTER_NEAREST``. The iBims-1 masks (``mask_valid_path``,
  ``mask_transp_path``) zero pixels first, in the dense protocol only: the sparse-points branch
  of the authors' loader does not pass them.
* Dense protocol: the prediction is resized to the GT map's size with ``INTER_LINEAR`` and
  compared over pixels with ``gt > 0 and pred > 0``.
* Sparse protocol: the listed ``pixel_coords`` ([col, row] at ``original_rgb_size``) are scaled
  to ``canonical_size`` and rounded (``np.round``, half to even); a record without
  ``original_rgb_size`` (or without ``canonical_size``) keeps its raw coordinates, truncated
  (``astype(int64)``), while its GT map is still resized to ``canonical_size``. GT is read from
  that map, falling back to the JSONL ``depth`` value where the map is 0; points outside the
  map get GT 0. The prediction is then indexed at the same ``[row, col]`` *as given* (the
  authors' model predicts at the canonical scale on a multiple-of-32 grid, e.g. 1344x1024 for a
  1342x1006 canonical size, and is not resized); points outside the prediction are dropped.
* δ1 per image = mean over valid pixels of ``max(p/g, g/p) < 1.25``; an image without a valid
  pixel scores 0. The dataset score is the mean over images.

OpenCV is not a dependency, so :func:`resize_nearest` and :func:`resize_linear` re-implement the
two OpenCV resize modes the reference uses, including OpenCV's index arithmetic (nearest uses
``floor(dst * src/dst)`` without a half-pixel shift; linear uses half-pixel centres with the
border pixels replicated).

Only δ1 is the authors' metric (:data:`METRIC_PROVENANCE`). The others are ours, not in the
reference; they follow the usual definitions on the same valid pixels (see
:data:`METRIC_DEFINITIONS`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "METRIC_NAMES",
    "AUTHORS_METRICS",
    "HEADLINE_METRIC",
    "DATASET_COUNTS",
    "METRIC_DEFINITIONS",
    "METRIC_PROVENANCE",
    "DEPTH_BIN_EDGES",
    "ImageMetrics",
    "DatasetMetrics",
    "DepthBins",
    "resize_nearest",
    "points_inside",
    "resize_linear",
    "apply_depth_range",
    "image_metrics",
    "ratio_deltas",
    "dense_pair",
    "sparse_targets",
    "SparseTargets",
    "sample_points",
    "aggregate",
    "group_average",
]


@dataclass(frozen=True)
class _Metrics:
    """The metric values, in report order: the first fields of both metric records."""

    delta1: float
    delta2: float
    delta3: float
    abs_rel: float
    rmse: float
    silog: float


#: Keys of every metrics dict, in report order (the fields of :class:`ImageMetrics` and
#: :class:`DatasetMetrics` before their counts).
METRIC_NAMES = tuple(f.name for f in fields(_Metrics))

#: The metrics that the authors' evaluation computes (eval.py has δ1 only); the first one is the
#: headline number of every summary and report table.
AUTHORS_METRICS = ("delta1",)
HEADLINE_METRIC = AUTHORS_METRICS[0]

_THRESHOLDS = (1.25, 1.25 ** 2, 1.25 ** 3)

#: The δ's, one per threshold, first in :data:`METRIC_NAMES`: averaged over every image (an
#: image with no valid pixel scores 0, as the reference does for δ1), whereas the error
#: metrics skip images without a valid pixel.
_RATIO_METRICS = METRIC_NAMES[:len(_THRESHOLDS)]

#: Human-readable definitions written into results.json and the report.
METRIC_DEFINITIONS = {
    "valid": "pixels/points with gt > 0 and pred > 0, after GT outside the dataset's "
             "[min_depth, max_depth] was zeroed (as the authors' loader does); dense GT also "
             "has the iBims-1 masks applied, sparse GT does not (as the authors); a sparse "
             "point whose GT map value is 0 takes the JSONL depth",
    "delta1": "(the authors' metric, eval.py compute_delta1) mean over valid of "
              "max(p/g, g/p) < 1.25 (float32 ratio); an image with no valid pixel scores 0",
    "delta2": "(ours) as delta1 with threshold 1.25**2",
    "delta3": "(ours) as delta1 with threshold 1.25**3",
    "abs_rel": "(ours) mean over valid of |p - g| / g",
    "rmse": "(ours) sqrt(mean over valid of (p - g)**2), metres",
    "silog": "(ours) 100 * sqrt(mean(d**2) - mean(d)**2), d = ln p - ln g over valid (KITTI "
             "benchmark form, lambda = 1)",
    "aggregation": "every metric is computed per image and averaged over the images of a "
                   "dataset (as eval.py averages delta1); abs_rel/rmse/silog skip images with "
                   "no valid pixel; indoor, outdoor and overall (ours) are unweighted means "
                   "over the real test sets of the group, never over extra (synthetic) sets",
}

#: Which metrics are the authors' (eval.py computes δ1 only) and which this package adds.
METRIC_PROVENANCE = {
    "authors": list(AUTHORS_METRICS),
    "ours": [m for m in METRIC_NAMES if m not in AUTHORS_METRICS],
    "note": "delta1 reproduces eval.py compute_delta1; the others are not in the authors' "
            "evaluation and use the same valid pixels/points",
}

#: GT-depth bin edges (metres) for the δ1-versus-depth curves.
DEPTH_BIN_EDGES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 80.0, 120.0)


# ----------------------------------------------------------------------------------------------
# OpenCV-compatible resizes
# ----------------------------------------------------------------------------------------------

def _nearest_index(src: int, dst: int) -> np.ndarray:
    # OpenCV resizeNN: ifx = 1 / (dst / src); sx = min(floor(dx * ifx), src - 1). Doing the
    # division the same way keeps floor() identical at exact multiples.
    ifx = 1.0 / (float(dst) / float(src))
    idx = np.floor(np.arange(dst, dtype=np.float64) * ifx).astype(np.int64)
    return np.minimum(idx, src - 1)


def resize_nearest(a: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize a 2-D array like ``cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST)``.

    Args:
        a: (H, W) array of any dtype.
        size: target ``(width, height)`` (OpenCV order).

    Returns:
        The (height, width) array, same dtype.
    """
    w, h = int(size[0]), int(size[1])
    if a.shape == (h, w):
        return a
    rows = _nearest_index(a.shape[0], h)
    cols = _nearest_index(a.shape[1], w)
    return a[rows[:, None], cols[None, :]]


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # OpenCV resize (INTER_LINEAR): source position (dx + 0.5) * scale - 0.5 in double,
    # sx = floor, fraction kept as float32 weight; sx < 0 -> (0, 0); sx >= src - 1 ->
    # (src - 1, 0). Checked against cv2 5.0: the weight comes from the double position.
    scale = 1.0 / (float(dst) / float(src))
    f = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    s = np.floor(f).astype(np.int64)
    frac = (f - s).astype(np.float32)
    low = s < 0
    s[low], frac[low] = 0, 0.0
    high = s >= src - 1
    s[high], frac[high] = src - 1, 0.0
    s1 = np.minimum(s + 1, src - 1)
    return s, s1, frac


def resize_linear(a: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize a 2-D float array like ``cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR)``.

    Computed in float32, horizontal pass first, as OpenCV does for float images. NaN spreads to
    the pixels it contributes to, so an invalid prediction stays invalid after resizing.

    Args:
        a: (H, W) array.
        size: target ``(width, height)``.

    Returns:
        (height, width) float32 array.
    """
    w, h = int(size[0]), int(size[1])
    a = np.asarray(a, dtype=np.float32)
    if a.shape == (h, w):
        return a
    x0, x1, fx = _linear_taps(a.shape[1], w)
    y0, y1, fy = _linear_taps(a.shape[0], h)
    with np.errstate(invalid="ignore"):
        horiz = a[:, x0] * (np.float32(1) - fx)[None, :] + a[:, x1] * fx[None, :]
        out = horiz[y0, :] * (np.float32(1) - fy)[:, None] + horiz[y1, :] * fy[:, None]
    return out.astype(np.float32, copy=False)


def apply_depth_range(gt: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Zero GT depth outside ``[min_depth, max_depth]`` (and non-finite values), as the authors do.

    Args:
        gt: GT depth in metres.
        min_depth: smallest valid depth (metres).
        max_depth: largest valid depth (metres), may be ``inf``.

    Returns:
        A float32 copy with invalid pixels set to 0.
    """
    out = np.array(gt, dtype=np.float32, copy=True)
    # Python floats compare at float32 precision here (NumPy's weak scalars), exactly like the
    # reference's float32 map against its Python-float range: a stored 0.05 stays valid at 0.05.
    lo, hi = float(min_depth), float(max_depth)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(out) | (out < lo) | (out > hi)
    out[bad] = 0.0
    return out


# ----------------------------------------------------------------------------------------------
# Per-image metrics
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageMetrics(_Metrics):
    """Metrics of one image (or one image's points).

    ``abs_rel``, ``rmse`` and ``silog`` are NaN when ``n_valid`` is 0; the δ's are then 0 (the
    reference's convention for δ1).
    """

    n_valid: int

    @classmethod
    def no_valid(cls) -> "ImageMetrics":
        """The metrics of an image without a valid pixel: δ's 0, error metrics NaN."""
        return cls(**{m: 0.0 if m in _RATIO_METRICS else math.nan for m in METRIC_NAMES},
                   n_valid=0)

    def as_dict(self) -> dict:
        return asdict(self)


def ratio_deltas(ratio: np.ndarray) -> tuple[float, float, float]:
    """δ1, δ2, δ3: the fractions of ``max(p/g, g/p)`` ratios under 1.25, 1.25², 1.25³."""
    d1, d2, d3 = (float((ratio < t).mean()) for t in _THRESHOLDS)
    return d1, d2, d3


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> ImageMetrics:
    """Metrics over the valid pixels of one image.

    Args:
        pred: predicted depth (metres), any shape; NaN or <= 0 is invalid.
        gt: GT depth (metres) of the same shape, already range-capped; <= 0 is invalid.

    Returns:
        The image's :class:`ImageMetrics`.
    """
    # float32 like the reference (its maps are float32): the ratio test is then bit-identical.
    p = np.asarray(pred, dtype=np.float32).ravel()
    g = np.asarray(gt, dtype=np.float32).ravel()
    if p.shape != g.shape:
        raise ValueError(f"pred and gt differ in size: {p.shape} vs {g.shape}")
    valid = (g > 0) & (p > 0)
    n = int(valid.sum())
    if n == 0:
        return ImageMetrics.no_valid()
    pv, gv = p[valid], g[valid]
    d1, d2, d3 = ratio_deltas(np.maximum(pv / gv, gv / pv))
    p64, g64 = pv.astype(np.float64), gv.astype(np.float64)
    abs_rel = float(np.mean(np.abs(p64 - g64) / g64))
    rmse = float(np.sqrt(np.mean((p64 - g64) ** 2)))
    d = np.log(p64) - np.log(g64)
    silog = float(100.0 * np.sqrt(max(0.0, float(np.mean(d ** 2) - np.mean(d) ** 2))))
    return ImageMetrics(d1, d2, d3, abs_rel, rmse, silog, n)


def dense_pair(pred: np.ndarray, gt_capped: np.ndarray,
               canonical_size: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Bring prediction and GT to the reference's evaluation grid (dense protocol).

    Args:
        pred: predicted depth at any resolution.
        gt_capped: GT at its native resolution, range-capped (see :func:`apply_depth_range`).
        canonical_size: ``[W, H]`` from the annotation, or None to evaluate at GT resolution.

    Returns:
        ``(pred_on_grid, gt_on_grid)``: GT nearest-resized to ``canonical_size``, prediction
        bilinearly resized to the GT's size.
    """
    gt = gt_capped
    if canonical_size:
        gt = resize_nearest(gt, canonical_size)
    p = np.asarray(pred, dtype=np.float32)
    if p.shape != gt.shape:
        p = resize_linear(p, (gt.shape[1], gt.shape[0]))
    return p, gt


@dataclass(frozen=True)
class SparseTargets:
    """The evaluation points of one image on the evaluation grid.

    Attributes:
        coords: (N, 2) int64 [col, row] on the grid (may lie outside it).
        gt: (N,) float32 GT in metres (0 = invalid).
        grid_size: ``(width, height)`` of the grid the coordinates refer to: ``canonical_size``,
            else ``original_rgb_size``, else None (the caller's image size).
    """

    coords: np.ndarray
    gt: np.ndarray
    grid_size: tuple[int, int] | None


def points_inside(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Mask of the (N, 2) [col, row] integer ``coords`` that index a map of ``shape`` (H, W)."""
    h, w = shape[:2]
    return (coords[:, 0] >= 0) & (coords[:, 0] < w) & (coords[:, 1] >= 0) & (coords[:, 1] < h)


def sparse_targets(pixel_coords: np.ndarray, depth_jsonl: np.ndarray,
                   original_rgb_size: Sequence[int] | None,
                   canonical_size: Sequence[int] | None,
                   gt_map_capped: np.ndarray | None,
                   min_depth: float = 0.0, max_depth: float = math.inf,
                   strict_range: bool = False) -> SparseTargets:
    """GT at the annotated points, as the reference's sparse-points mode computes it.

    Args:
        pixel_coords: (N, 2) [col, row] at ``original_rgb_size``.
        depth_jsonl: (N,) depth values from the annotation.
        original_rgb_size: ``(W, H)`` of the RGB the coordinates refer to, or None when the
            record does not say. Only with both sizes are the coordinates scaled (and rounded);
            otherwise the reference truncates the raw coordinates and uses them as they are.
        canonical_size: ``(W, H)`` evaluation grid, or None for the GT map's own grid.
        gt_map_capped: native-resolution range-capped GT map (unmasked: the reference's sparse
            branch ignores masks), or None when there is none (then the annotation values are
            used directly).
        min_depth, max_depth: dataset range, used only when ``strict_range``.
        strict_range: also zero annotation fall-back values outside the range. The reference
            does not (a point whose map value was capped away falls back to its uncapped JSONL
            value), so the default is False.

    Returns:
        The :class:`SparseTargets`.
    """
    coords = np.asarray(pixel_coords, dtype=np.float64).reshape(-1, 2)
    jsonl = np.asarray(depth_jsonl, dtype=np.float32).reshape(-1)
    if original_rgb_size and canonical_size:
        sx = canonical_size[0] / original_rgb_size[0]
        sy = canonical_size[1] / original_rgb_size[1]
        scaled = np.stack([coords[:, 0] * sx, coords[:, 1] * sy], axis=1)
        ij = np.round(scaled).astype(np.int64)
    else:
        ij = coords.astype(np.int64)  # the reference truncates here, without scaling
    if canonical_size:
        grid: tuple[int, int] | None = (int(canonical_size[0]), int(canonical_size[1]))
    elif original_rgb_size:
        grid = (int(original_rgb_size[0]), int(original_rgb_size[1]))
    else:
        grid = None
    fallback = jsonl.copy()
    if strict_range:
        fallback = apply_depth_range(fallback, min_depth, max_depth)
    if gt_map_capped is None:
        return SparseTargets(ij, fallback, grid)
    # The GT map goes to canonical_size whatever the coordinates did (the loader resizes it
    # independently of original_rgb_size).
    gmap = resize_nearest(gt_map_capped, canonical_size) if canonical_size else gt_map_capped
    inside = points_inside(ij, gmap.shape)
    gt = np.zeros(len(ij), dtype=np.float32)
    vals = gmap[ij[inside, 1], ij[inside, 0]].astype(np.float32)
    gt[inside] = np.where(vals > 0, vals, fallback[inside])
    return SparseTargets(ij, gt, grid)


def sample_points(pred_on_grid: np.ndarray, targets: SparseTargets) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and GT at the targets that fall inside the prediction (others are dropped).

    Args:
        pred_on_grid: the prediction indexed at ``targets.coords``: as the model gave it (the
            reference's raw indexing) or resized to ``targets.grid_size`` by the caller.
        targets: from :func:`sparse_targets`.

    Returns:
        ``(pred_values, gt_values)`` float32 arrays of equal length.
    """
    c = targets.coords
    inside = points_inside(c, pred_on_grid.shape)
    return (pred_on_grid[c[inside, 1], c[inside, 0]].astype(np.float32),
            targets.gt[inside].astype(np.float32))


# ----------------------------------------------------------------------------------------------
# Aggregation
# ----------------------------------------------------------------------------------------------

@dataclass
class DepthBins:
    """Pixel counts per GT-depth bin, for δ1 as a function of depth (pooled over pixels)."""

    edges: tuple[float, ...] = DEPTH_BIN_EDGES
    valid: np.ndarray = field(default=None)  # type: ignore[assignment]
    good: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.edges) - 1
        if self.valid is None:
            self.valid = np.zeros(n, dtype=np.int64)
        if self.good is None:
            self.good = np.zeros(n, dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image's pixels (same validity rule as :func:`image_metrics`)."""
        p = np.asarray(pred, dtype=np.float32).ravel()
        g = np.asarray(gt, dtype=np.float32).ravel()
        valid = (g > 0) & (p > 0)
        pv, gv = p[valid], g[valid]
        if pv.size == 0:
            return
        good = np.maximum(pv / gv, gv / pv) < _THRESHOLDS[0]
        # Depths beyond the last edge are counted in the last bin rather than dropped.
        idx = np.clip(np.searchsorted(self.edges, gv, side="right") - 1, 0, len(self.edges) - 2)
        self.valid += np.bincount(idx, minlength=len(self.valid))
        self.good += np.bincount(idx[good], minlength=len(self.good))

    def merge(self, other: "DepthBins") -> None:
        self.valid += other.valid
        self.good += other.good

    def delta1(self) -> list[float | None]:
        """δ1 per bin (None where the bin is empty)."""
        return [float(g / v) if v else None for g, v in zip(self.good, self.valid)]

    def as_dict(self) -> dict:
        return {"edges_m": list(self.edges), "n_valid": self.valid.tolist(),
                "delta1": self.delta1()}


@dataclass(frozen=True)
class DatasetMetrics(_Metrics):
    """Per-dataset averages of :class:`ImageMetrics`."""

    n_images: int
    n_points: int

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


#: The counts after the metrics in a :class:`DatasetMetrics` (and its dict).
DATASET_COUNTS = tuple(f.name for f in fields(DatasetMetrics))[len(METRIC_NAMES):]


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else math.nan


def aggregate(images: Sequence[ImageMetrics]) -> DatasetMetrics:
    """Average per-image metrics over a dataset.

    δ's average over every image (an image with no valid pixel counts as 0, as the reference);
    the error metrics skip images without valid pixels.

    Args:
        images: metrics of each evaluated image.

    Returns:
        The dataset's :class:`DatasetMetrics` (NaN metrics when ``images`` is empty).
    """
    n = len(images)
    if n == 0:
        return DatasetMetrics(**dict.fromkeys(METRIC_NAMES, math.nan), n_images=0, n_points=0)
    means = {k: float(sum(getattr(m, k) for m in images) / n) if k in _RATIO_METRICS
             else _nanmean(getattr(m, k) for m in images) for k in METRIC_NAMES}
    return DatasetMetrics(**means, n_images=n, n_points=int(sum(m.n_valid for m in images)))


def group_average(per_dataset: Mapping[str, DatasetMetrics],
                  names: Iterable[str]) -> DatasetMetrics | None:
    """Unweighted mean over datasets (each dataset counts once, whatever its size).

    Args:
        per_dataset: dataset name -> metrics.
        names: the datasets of the group; names without results are ignored.

    Returns:
        The group's metrics (counts are summed), or None when no dataset of the group was run.
    """
    members = [per_dataset[n] for n in names if n in per_dataset and per_dataset[n].n_images > 0]
    if not members:
        return None
    means = {k: _nanmean(getattr(m, k) for m in members) for k in METRIC_NAMES}
    return DatasetMetrics(**means, n_images=sum(m.n_images for m in members),
                          n_points=sum(m.n_points for m in members))
