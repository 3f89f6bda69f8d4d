"""DepthVLM-Bench: annotation reader, the authors' metrics, the runner and reports.

Submodules:

* :mod:`.jsonl` reads the authors' JSONL annotations into typed records;
* :mod:`.metrics` holds the evaluation arithmetic (δ1 etc., resizes, GT ranges);
* :mod:`.runner` evaluates a model or saved predictions plus baselines;
* :mod:`.report` writes ``results.json`` and Markdown / HTML reports.

``synthetic`` (scene generator) lives here too but is not imported by this package, so reading
and scoring annotations stays light.
"""

from .jsonl import BenchRecord, apply_gt_masks, load_gt_depth, load_rgb, read_jsonl
from .metrics import (METRIC_DEFINITIONS, METRIC_NAMES, METRIC_PROVENANCE, DatasetMetrics,
                      ImageMetrics, aggregate, dense_pair, group_average, image_metrics,
                      sparse_targets)
from .runner import (AUTHOR_DATASETS, DEPTHLM_QUESTION, PROTOCOL_DEFINITIONS, PROTOCOLS,
                     SPARSE_SAMPLING, SYNTHETIC_DATASETS, BenchResult, DatasetSpec, draw_marker,
                     load_dataset_config, parse_metres, run_benchmark,
                     spec_for_jsonl)

__all__ = [
    "BenchRecord", "read_jsonl", "load_rgb", "load_gt_depth", "apply_gt_masks",
    "METRIC_NAMES", "METRIC_DEFINITIONS", "METRIC_PROVENANCE", "ImageMetrics", "DatasetMetrics",
    "image_metrics", "dense_pair", "sparse_targets", "aggregate", "group_average",
    "AUTHOR_DATASETS", "SYNTHETIC_DATASETS", "DEPTHLM_QUESTION", "PROTOCOLS",
    "PROTOCOL_DEFINITIONS", "SPARSE_SAMPLING", "DatasetSpec", "BenchResult", "spec_for_jsonl",
    "load_dataset_config", "draw_marker", "parse_metres", "run_benchmark",
]
