"""One benchmark run as ``depthvlm bench`` does it: test sets and a model folder (or saved
predictions) in, ``results.json`` and the reports in a folder out.

:func:`load_model_callables` is where the inference pipeline meets the runner: it is the only
code here that knows the pipeline's API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from .datasets import DatasetSpec
from .depthlm import DEFAULT_DEPTHLM_POINTS, DEPTHLM_QUESTION
from .report import write_report
from .runner import BenchResult, run_benchmark
from .spatial_qa import QAFn, QAOutcome, run_spatial_qa

__all__ = ["load_model_callables", "run_and_report"]


def load_model_callables(model: str, device: str | None = None
                         ) -> tuple[Callable, Callable, QAFn]:
    """Wire a DepthVLM model into the runner's callables.

    Kept in one place so that changes in the pipeline API touch only this function.

    Args:
        model: model folder, or ``embedded``.
        device: torch device (None: the configuration's default).

    Returns:
        ``(depth_fn, point_fn, qa_fn)``: ``depth_fn(rgb, intrinsics)`` -> (H, W) float32 metres
        with NaN invalid; ``point_fn(marked_rgb, intrinsics, (u, v))`` -> the answer text to
        :data:`~.depthlm.DEPTHLM_QUESTION` (parsed by the runner); ``qa_fn(rgb, intrinsics,
        questions)`` -> a :class:`~.spatial_qa.QAOutcome` per question, all from one processed
        frame (the node's answer path, ``measured`` mode, so both texts are produced).
    """
    from ..answers import answer_question
    from ..config import DepthVLMConfig
    from ..distributed import rank_device
    from ..pipeline import DepthVLMPipeline

    # The benchmark applies each dataset's own GT caps; the node's publishing range (100 m by
    # default) must not blank far predictions on outdoor sets capped at 120 m.
    changes: dict[str, Any] = {"model_path": model, "max_depth": 1000.0}
    device = rank_device(device)
    if device is not None:
        changes["device"] = device
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(**changes))

    def depth_fn(rgb, intrinsics):
        return pipe.process_frame(rgb, intrinsics, keep_context=False).depth

    def point_fn(marked_rgb, intrinsics, uv):
        # The marker is in the image; the question refers to it, as DepthLM does.
        return pipe.predict(marked_rgb, intrinsics, question=DEPTHLM_QUESTION).answer

    def qa_fn(rgb, intrinsics, questions):
        frame = pipe.process_frame(rgb, intrinsics, keep_context=True)
        out = []
        for question in questions:
            res = answer_question(pipe, frame.context, frame.depth, intrinsics, question,
                                  mode="measured")
            located = res.located_points
            out.append(QAOutcome(res.model_answer, res.answer if res.ok else "", located))
        return out

    return depth_fn, point_fn, qa_fn


def run_and_report(datasets: Sequence[DatasetSpec], out: str | os.PathLike, *,
                   model: str | None = None, predictions: str | os.PathLike | None = None,
                   device: str | None = None, name: str | None = None,
                   depthlm_points: int | None = None,
                   **options: Any) -> tuple[BenchResult, dict[str, Path]]:
    """Benchmark a model folder or saved predictions and write the reports to ``out``.

    Args:
        datasets: the test sets (see :func:`~.datasets.select_datasets`).
        out: folder for ``results.json``, ``report.md``, ``report.html`` and ``plots/``.
        model: DepthVLM model folder or ``embedded`` (exactly one of ``model`` and
            ``predictions``).
        predictions: folder of saved ``.npy`` predictions.
        device: torch device for ``model`` (None: the configuration's default).
        name: label of the evaluated model (default: ``model``, else
            ``predictions:<folder name>``).
        depthlm_points: per-point baseline questions per image (None:
            :data:`~.depthlm.DEFAULT_DEPTHLM_POINTS` with a model, 0 with predictions, which
            have no VLM to ask).
        **options: the other keyword arguments of :func:`~.runner.run_benchmark`.

    Returns:
        The result and the written paths (keys ``results``, ``markdown``, ``html``); under
        ``torchrun`` the records are split over the ranks and only rank 0 gets the merged
        result and writes the report (the other ranks get an empty result and no paths).
    """
    depth_fn = point_fn = qa_fn = None
    if model:
        depth_fn, point_fn, qa_fn = load_model_callables(model, device)
    if depthlm_points is None:
        depthlm_points = DEFAULT_DEPTHLM_POINTS if model else 0
    label = name or (model if model else f"predictions:{Path(predictions).name}")
    result = run_benchmark(datasets, depth_fn=depth_fn, predictions=predictions,
                           point_fn=point_fn, depthlm_points=depthlm_points, model_name=label,
                           **options)
    if qa_fn is not None:
        # Spatial QA needs a model to ask; saved predictions have none.
        qa = run_spatial_qa(datasets, qa_fn, limit=options.get("limit"),
                            progress=options.get("progress", True))
        if result.is_main:
            result.results["spatial_qa"] = qa
    if not result.is_main:  # under torchrun, rank 0 writes the one report
        return result, {}
    return result, write_report(result, out)
