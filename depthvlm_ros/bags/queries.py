"""Scripted questions for a replay: a YAML list of questions asked at points in a bag."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError

__all__ = ["ABSOLUTE_TIME_THRESHOLD_S", "ScriptedQuery", "load_queries"]

#: ``time`` values at or above this many seconds are read as absolute stamps (after 2001-09).
ABSOLUTE_TIME_THRESHOLD_S = 1e9


@dataclass(frozen=True)
class ScriptedQuery:
    """A question asked at a point in the bag.

    Attributes:
        time_s: seconds from the bag start (``absolute`` false) or an absolute header stamp.
        question: the text.
        pixels: (u, v) pixels of the input image the question refers to.
        regions: (x_offset, y_offset, width, height) regions of the input image.
        id: identifier copied into the answer.
        absolute: ``time_s`` is a header stamp; the frame asked about is the last image whose
            header stamp is not later. Otherwise it is the last image logged not later than
            bag start + ``time_s``.
    """

    time_s: float
    question: str
    pixels: tuple[tuple[float, float], ...] = ()
    id: str = ""
    absolute: bool = False
    regions: tuple[tuple[int, int, int, int], ...] = ()


def load_queries(path: str | Path) -> list[ScriptedQuery]:
    """Read scripted questions from YAML.

    The file is a list (or a mapping with a ``queries`` list) of entries with ``question``,
    one of ``time`` (seconds from bag start; values >= 1e9 are taken as absolute stamps) or
    ``stamp`` (absolute header stamp in seconds), optional ``pixels: [[u, v], ...]``, optional
    ``regions: [[x_offset, y_offset, width, height], ...]`` and optional ``id`` (default
    ``q<index>``).

    Raises:
        InputError: unreadable file or a malformed entry (the message names the entry).
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read queries {path}: {exc}") from None
    if isinstance(data, dict):
        if set(data) - {"queries"}:
            # A mapping is only a wrapper around the list; other keys mean a wrong file.
            raise InputError(f"{path}: expected a list of queries or a mapping with a 'queries' "
                             f"list, got keys {', '.join(sorted(map(str, data))[:5])}")
        data = data.get("queries")
    if data is None:
        return []
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of queries")
    out = []
    for i, entry in enumerate(data):
        where = f"{path}: query {i}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} is not a mapping")
        unknown = set(entry) - {"time", "stamp", "question", "pixels", "regions", "id"}
        if unknown:
            raise InputError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        q = entry.get("question")
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"{where}: 'question' must be non-empty text")
        if ("time" in entry) == ("stamp" in entry):
            raise InputError(f"{where}: give exactly one of 'time' or 'stamp'")
        raw_t = entry.get("time", entry.get("stamp"))
        if isinstance(raw_t, bool) or not isinstance(raw_t, (int, float)) or not math.isfinite(raw_t):
            raise InputError(f"{where}: time must be a number of seconds")
        absolute = "stamp" in entry or raw_t >= ABSOLUTE_TIME_THRESHOLD_S
        if not absolute and raw_t < 0:
            raise InputError(f"{where}: time must not be negative")
        pixels = entry.get("pixels") or []
        try:
            px = tuple((float(p[0]), float(p[1])) for p in pixels if len(p) == 2)
        except (TypeError, ValueError):
            px = ()
        if len(px) != len(pixels) or not all(math.isfinite(c) for p in px for c in p):
            raise InputError(f"{where}: pixels must be a list of [u, v] number pairs")
        regions = entry.get("regions") or []
        try:
            rois = tuple(tuple(int(c) for c in r) for r in regions)
            exact = all(len(r) == 4 and all(float(c) == int(c) for c in r) for r in regions)
        except (TypeError, ValueError):
            rois, exact = (), False
        if not exact or len(rois) != len(regions):
            raise InputError(f"{where}: regions must be a list of [x_offset, y_offset, width, "
                             "height] whole numbers")
        qid = entry.get("id", f"q{i}")
        out.append(ScriptedQuery(float(raw_t), q, px, str(qid), absolute, rois))
    return out
