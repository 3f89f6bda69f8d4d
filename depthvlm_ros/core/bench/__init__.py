"""DepthVLM-Bench: annotation reader, the authors' metrics, the runner and reports.

Submodules:

* :mod:`.jsonl` reads the authors' JSONL annotations into typed records;
* :mod:`.metrics` holds the evaluation arithmetic (δ1 etc., resizes, GT ranges);
* :mod:`.datasets` describes the test sets (GT ranges, the datasets config, saved predictions);
* :mod:`.answers` reads distances from text answers and scores per-point answers;
* :mod:`.depthlm` is the DepthLM-style baseline (question, marker, points);
* :mod:`.runner` evaluates a model or saved predictions plus baselines;
* :mod:`.report` writes ``results.json`` and Markdown / HTML reports;
* :mod:`.job` is one run as ``depthvlm bench`` does it (a model folder, a report folder).

``synthetic`` (scene generator) lives here too but is not imported by this package, so reading
and scoring annotations stays light.
"""

from .answers import parse_metres
from .datasets import (AUTHOR_DATASETS, SYNTHETIC_DATASETS, DatasetSpec, load_dataset_config,
                       spec_for_jsonl)
from .depthlm import DEPTHLM_QUESTION, draw_marker
from .jsonl import BenchRecord, apply_gt_masks, load_gt_depth, load_rgb, read_jsonl
from .metrics import (METRIC_DEFINITIONS, METRIC_NAMES, METRIC_PROVENANCE, DatasetMetrics,
                      ImageMetrics, aggregate, dense_pair, group_average, image_metrics,
                      sparse_targets)
from .runner import (PROTOCOL_DEFINITIONS, PROTOCOLS, SPARSE_SAMPLING, BenchResult,
                     run_benchmark)

__all__ = [
    "BenchRecord", "read_jsonl", "load_rgb", "load_gt_depth", "apply_gt_masks",
    "METRIC_NAMES", "METRIC_DEFINITIONS", "METRIC_PROVENANCE", "ImageMetrics", "DatasetMetrics",
    "image_metrics", "dense_pair", "sparse_targets", "aggregate", "group_average",
    "AUTHOR_DATASETS", "SYNTHETIC_DATASETS", "DEPTHLM_QUESTION", "PROTOCOLS",
    "PROTOCOL_DEFINITIONS", "SPARSE_SAMPLING", "DatasetSpec", "BenchResult", "spec_for_jsonl",
    "load_dataset_config", "draw_marker", "parse_metres", "run_benchmark",
]
