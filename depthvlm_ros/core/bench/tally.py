"""What a benchmark run accumulates: per-image metrics per row, protocol and dataset.

Each image's values carry the record's place in its test set, so tallies of several
``torchrun`` ranks merge into exactly the single-process order (:meth:`Tally.merge`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .datasets import DatasetSpec
from .metrics import DepthBins, ImageMetrics, aggregate, group_average

__all__ = ["GROUPS", "ROWS", "Sample", "Row", "Tally"]

#: The group means of every row, after its datasets: unweighted over the real test sets.
GROUPS = ("indoor", "outdoor", "overall")

#: The rows of a protocol's results: the evaluated model (labelled with its name) and the
#: baselines, with what each is, written into results.json and the report.
ROWS = {
    "model": "the evaluated model",
    "const_median": "one constant depth per dataset: train_median_m from the config when set, "
                    "else the median of the pooled valid test GT (a dataset-level prior, never "
                    "per image)",
    "depthlm": "DepthLM-style VLM asked one question per point with a marker drawn on the "
               "image; unusable answers count as wrong for the deltas",
    "model@points": "the evaluated model scored on the same points as depthlm",
}


@dataclass
class Sample:
    """A downsized image with its GT and predictions on the evaluation grid, for reports."""

    dataset: str
    name: str
    rgb: np.ndarray
    gt: np.ndarray
    pred: np.ndarray
    dataset_index: int = 0
    order: int = 0


class Row:
    """Per-dataset image metrics and depth bins for one row (model or baseline) of one protocol.

    Each image's metrics carry the record's place in its test set, so that the rows of several
    ranks merge into exactly the single-process order (:meth:`merge`).
    """

    def __init__(self) -> None:
        self.images: dict[str, list[ImageMetrics]] = {}
        self.order: dict[str, list[int]] = {}
        self.bins: dict[str, DepthBins] = {}
        self.scored_as: dict[str, dict[str, int]] = {}

    def add(self, ds: str, m: ImageMetrics, pred: np.ndarray | None = None,
            gt: np.ndarray | None = None, mode: str = "sparse", order: int = 0) -> None:
        self.images.setdefault(ds, []).append(m)
        self.order.setdefault(ds, []).append(order)
        counts = self.scored_as.setdefault(ds, {"sparse": 0, "dense": 0})
        counts[mode] += 1
        if pred is not None:
            self.bins.setdefault(ds, DepthBins()).add(pred, gt)

    def merge(self, other: "Row") -> None:
        """Add another rank's images (kept in record order) and bin counts."""
        for ds, images in other.images.items():
            pairs = sorted(zip(self.order.get(ds, []) + other.order[ds],
                               self.images.get(ds, []) + images), key=lambda p: p[0])
            self.order[ds] = [o for o, _ in pairs]
            self.images[ds] = [m for _, m in pairs]
            mine = self.scored_as.setdefault(ds, {"sparse": 0, "dense": 0})
            for mode, n in other.scored_as[ds].items():
                mine[mode] += n
        for ds, bins in other.bins.items():
            self.bins.setdefault(ds, DepthBins()).merge(bins)

    def summary(self, specs: Sequence[DatasetSpec]) -> dict:
        per = {s.name: aggregate(self.images[s.name]) for s in specs if s.name in self.images}
        out: dict[str, Any] = {"datasets": {}}
        for k, v in per.items():
            # Which protocol each image of the dataset was scored with (auto mixes them).
            out["datasets"][k] = dict(v.as_dict(), scored_as=dict(self.scored_as[k]))
        # Group means cover the real test sets only: an extra (synthetic) set would shift the
        # indoor / outdoor / overall numbers away from the paper's definition.
        real = [s for s in specs if not s.extra]
        members = {"indoor": [s.name for s in real if s.domain == "indoor"],
                   "outdoor": [s.name for s in real if s.domain == "outdoor"],
                   "overall": [s.name for s in real]}
        for group in GROUPS:
            g = group_average(per, members[group])
            out[group] = g.as_dict() if g is not None else None
        return out


@dataclass
class Tally:
    """What a run accumulates over its records."""

    protocols: tuple[str, ...]
    rows: dict[str, dict[str, Row]] = field(init=False)
    samples: list[Sample] = field(default_factory=list)
    model_times: dict[str, list[float]] = field(default_factory=dict)
    point_times: dict[str, list[float]] = field(default_factory=dict)
    point_image_times: dict[str, list[float]] = field(default_factory=dict)
    parse_fail: dict[str, int] = field(default_factory=lambda: {"asked": 0, "failed": 0})
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {p: {r: Row() for r in ROWS} for p in self.protocols}

    def start_dataset(self, name: str) -> None:
        self.skipped[name] = {"dense_no_gt_map": 0, "sparse_no_points": 0}
        self.model_times[name], self.point_times[name], self.point_image_times[name] = [], [], []

    def merge(self, other: "Tally", n_samples: int) -> None:
        """Add another rank's tally: per-image values in record order, counts summed."""
        for proto, rows in other.rows.items():
            for name, row in rows.items():
                self.rows[proto][name].merge(row)
        for mine, theirs in ((self.model_times, other.model_times),
                             (self.point_times, other.point_times),
                             (self.point_image_times, other.point_image_times)):
            for ds, values in theirs.items():
                mine.setdefault(ds, []).extend(values)
        for key, n in other.parse_fail.items():
            self.parse_fail[key] += n
        for ds, counts in other.skipped.items():
            for key, n in counts.items():
                self.skipped.setdefault(ds, dict.fromkeys(counts, 0))[key] += n
        # The report's samples: the first n_samples records of each set with a dense GT.
        merged = sorted(self.samples + other.samples, key=lambda s: (s.dataset_index, s.order))
        by_ds: dict[str, list[Sample]] = {}
        for sample in merged:
            if len(by_ds.setdefault(sample.dataset, [])) < n_samples:
                by_ds[sample.dataset].append(sample)
        self.samples = [x for v in by_ds.values() for x in v]
