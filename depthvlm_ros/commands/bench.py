"""``depthvlm bench``: score a depth model on DepthVLM-Bench annotations and write a report.

Examples::

    depthvlm bench --config config/eval_datasets.yaml --datasets nyuv2,ibims1 \\
        --model embedded --out runs/bench
    depthvlm bench --data test.jsonl --predictions preds/ --protocol dense --out runs/other

``--protocol auto`` (the default) scores each record the way the authors' eval.py does: on its
annotated points when it has them, else on its dense GT map. ``--sparse-sampling auto`` indexes
saved predictions as given (like the authors' ``_pred.npy``) and resizes a model run here to
``canonical_size`` first (our pipeline returns depth at the input resolution).
"""

from __future__ import annotations

import argparse

from ..core.config import DepthVLMConfig

__all__ = ["HELP", "add_arguments", "run"]

HELP = "Benchmark metric depth on DepthVLM-Bench JSONL files (δ1, AbsRel, ...) and write a report."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options on ``p``."""
    from ..core.bench.depthlm import DEFAULT_DEPTHLM_POINTS

    src = p.add_argument_group("test sets (one of)")
    src.add_argument("--data", action="append", default=[], metavar="FILE.jsonl",
                     help="annotation file (repeatable); GT range and indoor/outdoor are matched "
                          "from the path like the authors' loader")
    src.add_argument("--config", metavar="YAML",
                     help="datasets config, e.g. config/eval_datasets.yaml")
    src.add_argument("--datasets", metavar="A,B",
                     help="with --config: comma-separated subset of its datasets (default: "
                          "every set not marked extra, i.e. the paper's nine; synthetic sets "
                          "run only when named)")
    model = p.add_argument_group("what to evaluate (one of)")
    model.add_argument("--predictions", metavar="DIR",
                       help="folder of <image stem>.npy depth maps in metres (also "
                            "DIR/<dataset>/<stem>.npy), from any model; the sparse protocol "
                            "indexes them as given at canonical-grid coordinates, like the "
                            "authors' _pred.npy")
    model.add_argument("--model", metavar="PATH_OR_embedded",
                       help="DepthVLM model folder, or 'embedded'")
    p.add_argument("--name", help="label of the evaluated model in the report")
    p.add_argument("--device", default=DepthVLMConfig.device,
                   help=f"torch device for --model (default {DepthVLMConfig.device})")
    p.add_argument("--protocol", choices=("auto", "sparse", "dense", "both"), default="auto",
                   help="auto (default): the authors' rule, points where a record has them, "
                        "else the dense map; sparse: the annotated points; dense: the whole GT "
                        "map of every record; both: sparse and dense tables")
    p.add_argument("--sparse-sampling", choices=("auto", "raw", "resize"), default="auto",
                   help="how the prediction is read at the points: raw = indexed as given "
                        "(the authors' treatment of their model's canonical-scale output); "
                        "resize = bilinearly resized to canonical_size first; auto (default) = "
                        "raw for --predictions, resize for --model")
    p.add_argument("--out", required=True, help="output folder for results.json and the reports")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="at most N images per dataset")
    p.add_argument("--depthlm-points", type=int, default=None, metavar="N",
                   help="DepthLM-style baseline: N text questions per image, one marked point "
                        f"each, asked of the same VLM (default {DEFAULT_DEPTHLM_POINTS} with "
                        "--model; 0 disables; not available with --predictions, which has no "
                        "VLM to ask)")
    p.add_argument("--no-constant-baseline", action="store_true",
                   help="leave out the constant-median baseline row")
    p.add_argument("--strict-range", action="store_true",
                   help="also drop sparse GT fall-back values outside the dataset range "
                        "(the authors' evaluation keeps them)")
    p.add_argument("--samples", type=int, default=2, metavar="K",
                   help="sample images per dataset in the report (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_arguments(args: argparse.Namespace) -> None:
    """The option combinations the parser cannot express."""
    from ..core.errors import ConfigError

    if bool(args.data) == bool(args.config):
        raise ConfigError("give either --data FILE.jsonl (repeatable) or --config YAML")
    if args.datasets and not args.config:
        raise ConfigError("--datasets selects from --config; with --data list the files instead")
    if bool(args.predictions) == bool(args.model):
        raise ConfigError("give either --predictions DIR or --model PATH_OR_embedded")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be >= 1")
    if args.depthlm_points and not args.model:
        raise ConfigError("--depthlm-points needs --model (a VLM to ask)")
    if args.depthlm_points is not None and args.depthlm_points < 0:
        raise ConfigError("--depthlm-points must be >= 0")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write ``results.json``, ``report.md`` and ``report.html``."""
    from ..core.bench.datasets import select_datasets
    from ..core.bench.job import run_and_report
    from ..core.bench.report import summary_lines

    _check_arguments(args)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()] if args.datasets else None
    result, paths = run_and_report(
        select_datasets(config=args.config, names=names, jsonl=args.data), args.out,
        model=args.model, predictions=args.predictions, device=args.device, name=args.name,
        depthlm_points=args.depthlm_points,
        protocols=("sparse", "dense") if args.protocol == "both" else (args.protocol,),
        limit=args.limit, constant_baseline=not args.no_constant_baseline,
        n_samples=args.samples, progress=not args.no_progress, strict_range=args.strict_range,
        sparse_sampling=args.sparse_sampling)
    if result.is_main:
        print("\n".join(summary_lines(result, paths)))
    return 0
