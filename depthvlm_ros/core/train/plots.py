"""Training curves: the JSONL logs of one run, or of runs that continue one another, as a PNG.

Each run's ``train_log.jsonl`` holds ``train`` rows (losses per logged step) and ``eval`` rows
(:func:`~depthvlm_ros.core.train.evaluate.evaluate_model` results); :func:`chain_logs` puts the
logs of a run and its continuations on one step axis and :func:`plot_losses` draws them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["chain_logs", "plot_losses", "seconds_per_step"]

#: Losses a ``train`` row may carry and their legend labels; the training-only grounding
#: losses of :mod:`.locate` are drawn dotted, and only by runs that had them.
_LOSSES = (("depth_loss", "SILog (depth)"), ("lm_loss", "LM (answers)"),
           ("locate_loss", "position readouts"), ("select_loss", "selection"),
           ("object_loss", "object probes"))


def _log_rows(log_path: Path) -> list[dict]:
    """The rows of a JSONL log; a line that is not JSON (a run cut off mid-write) is skipped."""
    rows = []
    for line in Path(log_path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def chain_logs(log_paths: Sequence[Path], branch_steps: Sequence[int | None] | None = None
               ) -> tuple[list[dict], list[dict], list[int]]:
    """Read the JSONL logs of runs that continue one another into one step axis.

    Run ``i + 1`` was started (``--init``) from a checkpoint of run ``i``: from the step
    ``branch_steps[i]`` (e.g. its ``best`` folder's ``steps``), or from its last logged step
    when that is None or not given. Rows of run ``i`` after its branch step are left out (they
    are not the continuation's ancestors); a step logged twice (a resumed run appends to its
    log) keeps its last row; unreadable lines are skipped.

    Returns:
        ``(train_rows, eval_rows, starts)``: rows with chained ``step`` and their run index in
        ``run``, and the chained step at which each run after the first starts.
    """
    runs = []
    for path in log_paths:
        rows: dict[tuple[str, int], dict] = {}
        for row in _log_rows(path):
            row["step"] = int(row.get("step", 0))
            rows[(str(row.get("type")), row["step"])] = row
        runs.append(sorted(rows.values(), key=lambda r: r["step"]))
    branches = list(branch_steps or [])
    train_rows, eval_rows, starts = [], [], []
    offset = 0
    for i, rows in enumerate(runs):
        last = max((r["step"] for r in rows), default=0)
        branch = branches[i] if i < len(branches) and branches[i] is not None else None
        end = last if branch is None or i == len(runs) - 1 else int(branch)
        for row in rows:
            if row["step"] > end:
                continue
            row = {**row, "step": offset + row["step"], "run": i}
            (eval_rows if row.get("type") == "eval" else train_rows).append(row)
        offset += end
        if i < len(runs) - 1:
            starts.append(offset)
    return train_rows, eval_rows, starts


def seconds_per_step(log_path: Path, skip_rows: int = 1) -> float:
    """The median pace (seconds per optimizer step) a run's ``train`` rows logged.

    The first ``skip_rows`` rows are left out when later ones exist: they include the start-up
    (data-loading workers, the first kernels) that every later step does not pay.

    Raises:
        ValueError: the log has no ``train`` row with a pace.
    """
    paces = [float(row["sec_per_step"]) for row in _log_rows(log_path)
             if row.get("type") == "train" and isinstance(row.get("sec_per_step"), (int, float))]
    if not paces:
        raise ValueError(f"{log_path} has no train row with sec_per_step")
    return float(np.median(paces[skip_rows:] if len(paces) > skip_rows else paces))


def plot_losses(log_path: Path | Sequence[Path], png_path: Path,
                branch_steps: Sequence[int | None] | None = None) -> list[str]:
    """Plot training losses and evaluation scores from the JSONL log into a PNG.

    ``log_path`` may also be a sequence of logs of runs that continue one another, with the
    steps they branched from; see :func:`chain_logs`. Where each continuation starts is
    drawn as a solid line.

    Returns:
        The keys of the losses drawn (none, and no PNG, for a log without train rows).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [Path(log_path)] if isinstance(log_path, (str, Path)) else [Path(p) for p in log_path]
    train_rows, eval_rows, boundaries = chain_logs(logs, branch_steps)
    if not train_rows:
        return []
    fig, axes = plt.subplots(1, 2 if eval_rows else 1, figsize=(12 if eval_rows else 7, 4.2))
    axes = np.atleast_1d(axes)
    steps = [r["step"] for r in train_rows]
    window = max(1, len(train_rows) // 40)  # the raw rows are single small batches: noisy
    drawn = []
    for key, label in _LOSSES:
        values = np.array([r.get(key, math.nan) for r in train_rows], dtype=float)
        known = np.isfinite(values)
        if not known.any():  # a training-only loss this run did not have
            continue
        style = "-" if key in ("depth_loss", "lm_loss") else ":"
        line, = axes[0].plot(steps, values, alpha=0.25, lw=0.8, ls=style)
        # A mean over the logs that have the loss (grounding losses skip the head-only stage).
        kernel = np.ones(window)
        total = np.convolve(np.where(known, values, 0.0), kernel, mode="valid")
        count = np.convolve(known.astype(float), kernel, mode="valid")
        with np.errstate(invalid="ignore", divide="ignore"):
            smooth = np.where(count > 0, total / count, math.nan)
        axes[0].plot(steps[window - 1:], smooth, color=line.get_color(), ls=style,
                     label=f"{label}, mean of {window} logs" if window > 1 else label)
        drawn.append(key)
    for r0, r1 in zip(train_rows, train_rows[1:]):
        if r0["stage"] != r1["stage"] and r0["run"] == r1["run"]:
            axes[0].axvline(r1["step"], color="grey", ls="--", lw=0.8)
    for b in boundaries:
        for ax in axes:
            ax.axvline(b, color="black", lw=1.2)
    axes[0].set_xlabel("optimizer step")
    axes[0].set_yscale("log")
    axes[0].set_title("training loss (dashed: stage change" +
                      (", solid: next run)" if len(logs) > 1 else ")"))
    axes[0].legend()
    if eval_rows:
        es = [r["step"] for r in eval_rows]
        groups = sorted({g for r in eval_rows for g in r.get("depth", {})})
        series = [(f"δ1 {g}", [r.get("depth", {}).get(g, {}).get("delta1") for r in eval_rows])
                  for g in groups]
        series += [(label, [r["summary"].get(key) for r in eval_rows])
                   for key, label in (("abs_rel_max", "AbsRel (worst split)"),
                                      ("answer_accuracy", "answers within 25%"))]
        top = 1.0
        for label, values in series:
            values = [math.nan if v is None else float(v) for v in values]
            axes[1].plot(es, values, marker="o", label=label)
            top = max([top] + [v for v in values if math.isfinite(v)])
        axes[1].set_xlabel("optimizer step")
        axes[1].set_ylim(0, min(top * 1.05, 5.0))
        axes[1].set_title("held-out evaluation")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return drawn
