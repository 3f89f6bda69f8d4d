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
import sys
from pathlib import Path
from typing import Callable

__all__ = ["HELP", "add_arguments", "run", "load_model_callables"]

HELP = "Benchmark metric depth on DepthVLM-Bench JSONL files (δ1, AbsRel, ...) and write a report."
#: Points per image for the DepthLM-style baseline when a model is benchmarked.
DEFAULT_DEPTHLM_POINTS = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Register the command's options on ``p``."""
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
    p.add_argument("--device", default="auto", help="torch device for --model (default auto)")
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
                        "each, asked of the same VLM (default 8 with --model; 0 disables; not "
                        "available with --predictions, which has no VLM to ask)")
    p.add_argument("--no-constant-baseline", action="store_true",
                   help="leave out the constant-median baseline row")
    p.add_argument("--strict-range", action="store_true",
                   help="also drop sparse GT fall-back values outside the dataset range "
                        "(the authors' evaluation keeps them)")
    p.add_argument("--samples", type=int, default=2, metavar="K",
                   help="sample images per dataset in the report (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_model_callables(model: str, device: str = "auto") -> tuple[Callable, Callable]:
    """Wire a DepthVLM model into the runner's two callables.

    Kept in one place so that changes in the pipeline API touch only this function.

    Returns:
        ``(depth_fn, point_fn)``: ``depth_fn(rgb, intrinsics)`` -> (H, W) float32 metres with
        NaN invalid; ``point_fn(marked_rgb, intrinsics, (u, v))`` -> the answer text to
        :data:`~depthvlm_ros.core.bench.runner.DEPTHLM_QUESTION` (parsed by the runner).
    """
    from ..core.bench.runner import DEPTHLM_QUESTION
    from ..core.config import DepthVLMConfig
    from ..core.pipeline import DepthVLMPipeline

    # The benchmark applies each dataset's own GT caps; the node's publishing range (100 m by
    # default) must not blank far predictions on outdoor sets capped at 120 m.
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=model, device=device,
                                                       max_depth=1000.0))

    def depth_fn(rgb, intrinsics):
        return pipe.process_frame(rgb, intrinsics, keep_context=False).depth

    def point_fn(marked_rgb, intrinsics, uv):
        # The marker is in the image; the question refers to it, as DepthLM does.
        return pipe.predict(marked_rgb, intrinsics, question=DEPTHLM_QUESTION).answer

    return depth_fn, point_fn


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and write ``results.json``, ``report.md`` and ``report.html``."""
    from ..core.bench.report import write_report
    from ..core.bench.runner import load_dataset_config, run_benchmark, spec_for_jsonl
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
    if args.depthlm_points is None:
        # The paper's comparison (dense head vs one question per point) belongs in every model
        # report; a few points per image keep its cost near one extra forward per point.
        args.depthlm_points = DEFAULT_DEPTHLM_POINTS if args.model else 0
    if args.depthlm_points < 0:
        raise ConfigError("--depthlm-points must be >= 0")

    if args.config:
        names = [n.strip() for n in args.datasets.split(",") if n.strip()] if args.datasets else None
        specs = load_dataset_config(args.config, names)
    else:
        specs = []
        for path in args.data:
            spec = spec_for_jsonl(path)
            # Two files matching the same dataset key must still get distinct labels.
            if any(s.name == spec.name for s in specs):
                spec = spec_for_jsonl(path, name=f"{spec.name}_{Path(path).stem}")
            specs.append(spec)

    depth_fn = point_fn = None
    if args.model:
        depth_fn, point_fn = load_model_callables(args.model, args.device)
    name = args.name or (args.model if args.model else f"predictions:{Path(args.predictions).name}")
    protocols = ("sparse", "dense") if args.protocol == "both" else (args.protocol,)
    result = run_benchmark(
        specs, depth_fn=depth_fn, predictions=args.predictions, protocols=protocols,
        limit=args.limit, point_fn=point_fn, depthlm_points=args.depthlm_points,
        constant_baseline=not args.no_constant_baseline, model_name=name,
        n_samples=args.samples, progress=not args.no_progress, strict_range=args.strict_range,
        sparse_sampling=args.sparse_sampling)
    paths = write_report(result, args.out)
    for proto, rows in result.results["results"].items():
        r = rows.get(name, {})
        overall = r.get("overall") or {}
        d1 = overall.get("delta1")
        if d1 is not None:
            print(f"{proto}: overall δ1 = {100 * d1:.1f}%")
        # Extra (synthetic) sets are outside the group means: print them on their own.
        for ds, d in (r.get("datasets") or {}).items():
            if result.results["metadata"]["datasets"][ds]["extra"] and d.get("delta1") is not None:
                print(f"{proto}: {ds} δ1 = {100 * d['delta1']:.1f}%")
        if not r.get("datasets"):
            print(f"{proto}: no images")
    print(f"results: {paths['results']}\nreport:  {paths['markdown']}\n         {paths['html']}",
          file=sys.stdout)
    return 0
