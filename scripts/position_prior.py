#!/usr/bin/env python3
"""What a camera mount alone predicts: the per-pixel depth prior of a training split.

A camera at a fixed height and tilt sees the floor at a given image row at the same distance
in every frame, so part of the depth of a fixed-mount world is known before looking at the
image. This script measures that part, so a model's figures can be read against it: it takes
the median GT depth at each position relative to the principal point (in pixels of the
canonical focal, ``--canonical-fx``, so cameras of every focal length share one table) over
the training split, and writes that table as a prediction for each image of the evaluation
files, in the folder layout ``depthvlm bench --predictions`` reads::

    python scripts/position_prior.py --train runs/embedded/data/train/synthetic.jsonl \\
        --data runs/embedded/data/heldout/synthetic_indoor.jsonl \\
        --data runs/embedded/data/heldout/synthetic_outdoor.jsonl --out runs/prior
    depthvlm bench --data runs/embedded/data/heldout/synthetic_indoor.jsonl \\
        --data runs/embedded/data/heldout/synthetic_outdoor.jsonl \\
        --predictions runs/prior --sparse-sampling resize --out runs/bench-prior

Each ``dataset`` of the training file (``synthetic_indoor``, ``synthetic_outdoor``) gets its
own table; a position no training pixel covered gets the dataset's overall median.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from depthvlm_ros.core.bench.jsonl import BenchRecord, load_gt_depth, read_jsonl
from depthvlm_ros.core.errors import DepthVLMError
from depthvlm_ros.core.frames import record_intrinsics

BIN_PX = 4   # canonical pixels per table cell


def _cells(record: BenchRecord, shape: tuple[int, int], canonical_fx: float):
    """Table cell (column, row) of every pixel of an image of ``shape``."""
    h, w = shape
    intr = record_intrinsics(record, w, h)   # the bench's rule, so both see one principal point
    scale = canonical_fx / intr.fx
    v, u = np.mgrid[0:h, 0:w]
    return (np.floor((u - intr.cx) * scale / BIN_PX).astype(np.int64),
            np.floor((v - intr.cy) * scale / BIN_PX).astype(np.int64))


class PositionPrior:
    """Median depth per table cell, per dataset."""

    def __init__(self, canonical_fx: float, reach: int = 512):
        self.canonical_fx = canonical_fx
        self.reach = reach          # table half-size in cells
        self.samples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.tables: dict[str, np.ndarray] = {}
        self.fallback: dict[str, float] = {}
        self.rng = np.random.default_rng(0)

    def _flat(self, cu: np.ndarray, cv: np.ndarray) -> np.ndarray:
        n = 2 * self.reach
        return (np.clip(cv + self.reach, 0, n - 1) * n + np.clip(cu + self.reach, 0, n - 1))

    def add(self, record: BenchRecord, gt: np.ndarray, keep: float = 0.2) -> None:
        cu, cv = _cells(record, gt.shape, self.canonical_fx)
        ok = np.isfinite(gt) & (gt > 0)
        # A random fifth of the pixels, not every fifth one: a fixed stride through a row
        # whose width is a multiple of it samples the same columns in every image and leaves
        # whole columns of table cells empty.
        idx = np.flatnonzero(ok)
        idx = idx[self.rng.random(idx.size) < keep]
        self.samples.setdefault(record.dataset or "all", []).append(
            (self._flat(cu.ravel()[idx], cv.ravel()[idx]), gt.ravel()[idx].astype(np.float32)))

    def fit(self) -> None:
        n = (2 * self.reach) ** 2
        for name, parts in self.samples.items():
            cells = np.concatenate([c for c, _ in parts])
            depth = np.concatenate([d for _, d in parts])
            order = np.lexsort((depth, cells))
            cells, depth = cells[order], depth[order]
            starts = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
            ends = np.r_[starts[1:], len(cells)]
            table = np.full(n, np.nan, np.float32)
            table[cells[starts]] = depth[(starts + ends - 1) // 2]
            self.tables[name] = table
            self.fallback[name] = float(np.median(depth))

    def predict(self, record: BenchRecord, shape: tuple[int, int]) -> np.ndarray:
        name = record.dataset if record.dataset in self.tables else next(iter(self.tables))
        cu, cv = _cells(record, shape, self.canonical_fx)
        out = self.tables[name][self._flat(cu, cv)]
        return np.where(np.isfinite(out), out, self.fallback[name]).astype(np.float32)


def _one_per_image(records: list[BenchRecord]) -> list[BenchRecord]:
    seen: dict[Path, BenchRecord] = {}
    for r in records:
        if r.depth_path is not None:
            seen.setdefault(r.image, r)
    return list(seen.values())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="training split JSONL (the prior's source)")
    p.add_argument("--data", action="append", required=True, help="JSONL to predict for")
    p.add_argument("--out", required=True, help="folder of <dataset>/<stem>.npy predictions")
    p.add_argument("--canonical-fx", type=float, default=256.0,
                   help="focal length (pixels) the table's positions are measured in")
    args = p.parse_args(argv)
    try:
        prior = PositionPrior(args.canonical_fx)
        train = _one_per_image(read_jsonl(args.train))
        for i, rec in enumerate(train):
            prior.add(rec, load_gt_depth(rec))
            if (i + 1) % 200 == 0 or i + 1 == len(train):
                print(f"[prior] {i + 1}/{len(train)} training images", file=sys.stderr)
        prior.fit()
        written = 0
        for path in args.data:
            for rec in _one_per_image(read_jsonl(path)):
                gt = load_gt_depth(rec)
                folder = Path(args.out) / (rec.dataset or "all")
                folder.mkdir(parents=True, exist_ok=True)
                np.save(folder / f"{rec.stem}.npy", prior.predict(rec, gt.shape))
                written += 1
        print(f"[prior] {written} predictions in {args.out}")
    except DepthVLMError as exc:
        print(f"position_prior: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
