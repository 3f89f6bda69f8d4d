"""How every benchmark of this package measures: synchronized clocks, medians, their ratios.

The machines these run on are usually shared, so absolute times move with other people's load.
Each benchmark therefore takes turns between the variants it compares (A, B, A, B, ...), so a
load spike hits both, and reports the medians and the **ratio of the medians**. Absolute times
are kept alongside for context only.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["summarize", "ratio_of_medians", "synchronized_time", "say"]


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of a list of durations, in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"n": 0, "median_ms": float("nan"), "min_ms": float("nan"), "max_ms": float("nan")}
    return {"n": int(ms.size), "median_ms": float(np.median(ms)), "min_ms": float(ms.min()),
            "max_ms": float(ms.max())}


def ratio_of_medians(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """``median(numerator) / median(denominator)`` (NaN when either is empty or the base is 0)."""
    if len(numerator) == 0 or len(denominator) == 0:
        return float("nan")
    den = float(np.median(denominator))
    return float(np.median(numerator)) / den if den > 0 else float("nan")


def synchronized_time(device: torch.device) -> float:
    """A timestamp taken after the device's queued work has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def say(progress: Callable[[str], None] | None, text: str) -> None:
    """Pass one progress line to ``progress``; benchmarks run silently without one."""
    if progress is not None:
        progress(text)
