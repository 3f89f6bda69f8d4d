"""The test sets: dataset specs, their GT ranges, the datasets config and saved predictions.

A test set is a :class:`DatasetSpec`: an annotation file with its GT range, its domain (for the
indoor / outdoor / overall means) and an optional constant for the ``const_median`` baseline.
Specs come from ``config/eval_datasets.yaml`` (:func:`load_dataset_config`) or from a bare JSONL
path matched by name like the authors' loader (:func:`spec_for_jsonl`); :func:`select_datasets`
is either, for a command line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import AnnotationError, ConfigError
from .jsonl import BenchRecord

__all__ = [
    "DatasetSpec",
    "AUTHOR_DATASETS",
    "SYNTHETIC_DATASETS",
    "spec_for_jsonl",
    "load_dataset_config",
    "select_datasets",
    "predictions_from_dir",
]

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


def select_datasets(*, config: str | os.PathLike | None = None,
                    names: Sequence[str] | None = None,
                    jsonl: Sequence[str | os.PathLike] = ()) -> list[DatasetSpec]:
    """The test sets of a run: from a datasets config, or from annotation files.

    Args:
        config: the datasets YAML (see :func:`load_dataset_config`).
        names: with ``config``: the datasets to keep, in this order (None: every set that is
            not ``extra``).
        jsonl: without ``config``: annotation files, each matched by :func:`spec_for_jsonl`.

    Raises:
        ConfigError: unreadable config, unknown dataset name or bad field.
    """
    if config:
        return load_dataset_config(config, names)
    specs: list[DatasetSpec] = []
    for path in jsonl:
        spec = spec_for_jsonl(path)
        # Two files matching the same dataset key must still get distinct labels.
        if any(s.name == spec.name for s in specs):
            spec = spec_for_jsonl(path, name=f"{spec.name}_{Path(path).stem}")
        specs.append(spec)
    return specs


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
