"""Numbers in a VLM's text answers, and the metrics of per-point answers.

:func:`parse_metres` reads a distance from free text ("about 2.3 m", "1,5 metres", "150 cm");
:func:`point_metrics` scores one image's answers against the GT at its points, counting an
unusable answer as wrong.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np

from .metrics import ImageMetrics, image_metrics, ratio_deltas

__all__ = ["parse_metres", "as_metres", "point_metrics"]

_UNITS = {
    "mm": 0.001, "millimeter": 0.001, "millimeters": 0.001, "millimetre": 0.001,
    "millimetres": 0.001,
    "cm": 0.01, "centimeter": 0.01, "centimeters": 0.01, "centimetre": 0.01, "centimetres": 0.01,
    "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
    "km": 1000.0, "kilometer": 1000.0, "kilometers": 1000.0, "kilometre": 1000.0,
    "kilometres": 1000.0,
    "ft": 0.3048, "foot": 0.3048, "feet": 0.3048,
}
# A number: 1,234.5 (thousands groups) | 1,5 (decimal comma) | 1.5 | .5 | 15; then a unit.
_NUM = r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+,\d+|\d+(?:\.\d+)?|\.\d+)(?![\d])"
_NUM_UNIT = re.compile(_NUM + r"\s*(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True))
                       + r")\b", re.IGNORECASE)
_NUM_ONLY = re.compile(_NUM)


def _to_float(tok: str) -> float:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", tok):
        return float(tok.replace(",", ""))
    return float(tok.replace(",", "."))


def parse_metres(text: Any) -> float | None:
    """Depth in metres from a free-text answer, or None.

    A number followed by a unit (m, metres, cm, mm, km, ft ...) is preferred over a bare
    number, so "point 1 is 2.3 m away" gives 2.3. ``1,5`` is a decimal comma (1.5);
    ``1,500`` is a thousands separator (1500). Negative, zero and non-finite values give None.

    Args:
        text: the model's answer.

    Returns:
        Metres, or None when no usable number is found.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    s = text.replace("\u2212", "-")
    m = _NUM_UNIT.search(s)
    if m:
        value, start = _to_float(m.group(1)) * _UNITS[m.group(2).lower()], m.start(1)
    else:
        m = _NUM_ONLY.search(s)
        if not m:
            return None
        value, start = _to_float(m.group(1)), m.start(1)
    if start > 0 and s[start - 1] == "-":
        return None  # negative distance: not a usable answer
    if not math.isfinite(value) or value <= 0:
        return None
    return value


def as_metres(answer: Any) -> float | None:
    """Metres from what a per-point callable returned, or None when it is unusable.

    Args:
        answer: a number, None, or an answer string (read with :func:`parse_metres`).
    """
    if answer is None:
        return None
    if isinstance(answer, str):
        return parse_metres(answer)
    try:
        v = float(answer)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def point_metrics(answers: Sequence[float | None], gt: Sequence[float]) -> ImageMetrics:
    """Metrics of one image's per-point answers.

    Points whose GT is invalid (<= 0) are ignored. Unlike the dense rule (where a prediction
    <= 0 is excluded), an unusable answer (None) counts as wrong for the δ's: a VLM should not
    gain accuracy by refusing to answer. Error metrics use the answered points only.
    """
    a = np.array([np.nan if x is None else float(x) for x in answers], dtype=np.float32)
    g = np.asarray(gt, dtype=np.float32)
    use = g > 0
    a, g = a[use], g[use]
    n = int(use.sum())
    if n == 0:
        return ImageMetrics.no_valid()
    answered = np.isfinite(a) & (a > 0)
    ratio = np.full(n, np.inf, dtype=np.float32)
    ratio[answered] = np.maximum(a[answered] / g[answered], g[answered] / a[answered])
    d1, d2, d3 = ratio_deltas(ratio)
    if answered.any():
        sub = image_metrics(a[answered], g[answered])
        return ImageMetrics(d1, d2, d3, sub.abs_rel, sub.rmse, sub.silog, n)
    return ImageMetrics(d1, d2, d3, math.nan, math.nan, math.nan, n)
