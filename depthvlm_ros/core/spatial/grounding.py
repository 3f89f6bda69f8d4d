"""Asking the model where a named object is, and reading its Qwen3-VL grounding answer.

Qwen3-VL writes grounding results as JSON, ``[{"bbox_2d": [x1, y1, x2, y2], "label": "chair"}]``
or with ``"point_2d": [x, y]``, with coordinates *relative* to the image: 0 .. 1000 of its width
and height, whatever size the image was resized to (Qwen2.5-VL used absolute pixels of the
resized image instead). Where this comes from: the Qwen3-VL README's note, quoted in
https://github.com/QwenLM/Qwen3-VL/issues/1741 ("relative coordinates ranging from 0 to 1000
... you don't need to calculate the resized_w"); a Qwen maintainer's reply in
https://github.com/QwenLM/Qwen3-VL/issues/1427 (Qwen3-VL uses 0-1000 relative coordinates, not
Qwen2.5-VL's absolute ones); supervision's ``from_qwen_3_vl``
(https://github.com/roboflow/supervision/pull/2015) reads them on a 1000 x 1000 grid. Alibaba
Cloud's Model Studio page says 0 .. 999; both ends are accepted.

The pipeline resizes the whole input image for the model (no crop, no padding), so a relative
coordinate maps to the input image by a plain scale: ``x * width / 1000`` is a position measured
from the image's left *edge*. A box becomes the whole pixels it touches
(``floor(x1 * W / 1000) .. ceil(x2 * W / 1000)``, at least one pixel); a point becomes the
pixel-centre coordinate ``x * W / 1000 - 0.5`` (the package's convention, centres at integers),
kept inside the image.

The parser is defensive: the model's text may wrap the JSON in a ```json fence, add words before
or after it, be cut off by the token limit, or hold nonsense. It returns located objects or
raises :class:`GroundingError` (an :class:`~depthvlm_ros.core.errors.InputError`) with a reason,
never another exception. Rules:

* a dict or a list of dicts; a bare ``[x1, y1, x2, y2]`` / ``[x, y]`` (or a list of them) is
  accepted as an unlabelled box / point; when the JSON is broken (truncated), every complete
  ``"bbox_2d": [...]`` / ``"point_2d": [...]`` in the text is read with the label that follows
  it in the same object;
* coordinates must be numbers in ``[0, 1000]``; an object with any other is skipped (values
  far outside usually mean absolute pixels, and guessing the scale would misplace the box);
* ``x1 > x2`` or ``y1 > y2``: the corners are swapped (the same box written in another order);
* at most :data:`MAX_LOCATED` objects are kept, in the order written;
* labels keep letters, spaces and simple punctuation only: no digits, so every number in an
  answer's text is a measurement or a pixel coordinate.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import InputError
from .regions import Region

__all__ = ["GROUNDING_SCALE", "MAX_LOCATED", "GroundingError", "LocatedObject",
           "grounding_prompt", "parse_grounding", "format_grounding"]

#: Qwen3-VL's relative coordinates run from 0 to this value across the image.
GROUNDING_SCALE = 1000.0

#: Most objects taken from one grounding answer.
MAX_LOCATED = 16

# The model's answer is bounded by max_new_tokens; this bounds the parser's work regardless.
_MAX_TEXT = 16384
_MAX_LABEL = 40

_PROMPT = ('Locate the object or objects this question is about: "{q}" Output JSON only: '
           '[{{"bbox_2d": [x1, y1, x2, y2], "label": "name"}}], coordinates 0-1000 relative '
           'to the image width and height. If none is visible, output [].')
_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.IGNORECASE | re.DOTALL)
_KEYED = re.compile(r'"(bbox_2d|point_2d)"\s*:\s*\[([^\[\]]*)\]')
_LABEL = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"')
_LABEL_DROP = re.compile(r"[^A-Za-z .,'&/-]+")


class GroundingError(InputError):
    """The model's answer locates nothing usable; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LocatedObject:
    """One object the model located, mapped to input-image pixels.

    Attributes:
        label: the model's label (cleaned, see the module docstring), ``""`` if none.
        region: the box, for ``bbox_2d``; None for a point.
        pixel: ``(u, v)`` pixel-centre coordinates, for ``point_2d``; None for a box.
        normalized: the coordinates as the model wrote them (0 .. 1000, corners ordered).
    """

    label: str
    region: Region | None
    pixel: tuple[float, float] | None
    normalized: tuple[float, ...]

    @property
    def point(self) -> tuple[float, float]:
        """Where the model points: its point, or the centre of its box (input pixels)."""
        if self.pixel is not None:
            return self.pixel
        r = self.region
        return r.x_offset + (r.width - 1) / 2.0, r.y_offset + (r.height - 1) / 2.0


def grounding_prompt(question: str, max_chars: int | None = None) -> str:
    """The follow-up question that asks the model to locate what ``question`` refers to.

    Asked on the same frame context as the question itself, so the model answers about the
    same image. The quoted question is shortened (ending in "...") when the whole prompt would
    exceed ``max_chars`` (the pipeline's ``max_query_chars``).
    """
    q = " ".join(str(question).split()).replace('"', "'")
    if max_chars is not None:
        room = max_chars - len(_PROMPT.format(q=""))
        if len(q) > room:
            q = q[:max(0, room - 3)].rstrip() + "..."
    return _PROMPT.format(q=q)


def format_grounding(objects: Sequence[tuple[str, Region]], width: int, height: int) -> str:
    """Qwen3-VL's grounding answer for labelled boxes, the inverse of :func:`parse_grounding`.

    Args:
        objects: ``(label, region)`` pairs; a region is whole input pixels.
        width, height: input image size the regions refer to.

    Returns:
        ``[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}]`` with integer 0-1000 coordinates
        whose parse covers the same pixels (exactly below 1000 pixels a side, else to the
        rounding of 1000 steps).
    """
    items = []
    scale = GROUNDING_SCALE
    for label, r in objects:
        # Starts rounded up and ends down: the parser floors starts and ceils ends, so for
        # images under 1000 pixels the parse gives back exactly these pixels.
        x1 = math.ceil(scale * r.x_offset / width)
        y1 = math.ceil(scale * r.y_offset / height)
        x2 = max(x1 + 1, math.floor(scale * (r.x_offset + r.width) / width))
        y2 = max(y1 + 1, math.floor(scale * (r.y_offset + r.height) / height))
        items.append({"bbox_2d": [min(int(scale), max(0, c)) for c in (x1, y1, x2, y2)],
                      "label": label})
    return json.dumps(items)


def _clean_label(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return " ".join(_LABEL_DROP.sub(" ", value).split())[:_MAX_LABEL].strip()


def _scale(c: float, size: int) -> float:
    return c * size / GROUNDING_SCALE


def _box(coords: list[float], width: int, height: int) -> tuple[Region, tuple[float, ...]]:
    x1, y1, x2, y2 = coords
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    left = min(math.floor(_scale(x1, width)), width - 1)
    top = min(math.floor(_scale(y1, height)), height - 1)
    right = min(max(math.ceil(_scale(x2, width)), left + 1), width)
    bottom = min(max(math.ceil(_scale(y2, height)), top + 1), height)
    return Region(left, top, right - left, bottom - top), (x1, y1, x2, y2)


def _point(coords: list[float], width: int, height: int) -> tuple[float, float]:
    u = min(max(_scale(coords[0], width) - 0.5, 0.0), width - 1.0)
    v = min(max(_scale(coords[1], height) - 0.5, 0.0), height - 1.0)
    return u, v


def _numbers(value: Any, n: int) -> tuple[list[float] | None, str]:
    """``value`` as ``n`` coordinates in range, or None and why not."""
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None, f"expected {n} coordinates, got {value!r:.60}"
    if any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in value):
        return None, f"coordinates must be numbers, got {value!r:.60}"
    coords = [float(c) for c in value]
    if not all(math.isfinite(c) and 0.0 <= c <= GROUNDING_SCALE for c in coords):
        return None, f"coordinates outside 0-1000: {value!r:.60}"
    return coords, ""


def _from_item(item: Any, width: int, height: int) -> tuple[LocatedObject | None, str]:
    if isinstance(item, (list, tuple)) and len(item) in (2, 4):  # a bare box or point
        item = {"bbox_2d" if len(item) == 4 else "point_2d": item}
    if not isinstance(item, dict):
        return None, f"not an object: {item!r:.60}"
    label = _clean_label(item.get("label"))
    if "bbox_2d" in item:
        coords, why = _numbers(item["bbox_2d"], 4)
        if coords is None:
            return None, f"bbox_2d: {why}"
        region, norm = _box(coords, width, height)
        return LocatedObject(label, region, None, norm), ""
    if "point_2d" in item:
        coords, why = _numbers(item["point_2d"], 2)
        if coords is None:
            return None, f"point_2d: {why}"
        return LocatedObject(label, None, _point(coords, width, height), tuple(coords)), ""
    return None, f"no bbox_2d or point_2d in {item!r:.60}"


def _decode_first(text: str) -> tuple[bool, Any]:
    """The JSON value that starts at the first ``[`` or ``{``, ignoring what follows it."""
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    if not starts:
        return False, None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, min(starts))
    except (ValueError, RecursionError):
        return False, None
    return True, value


def _salvage(text: str) -> list[dict]:
    """Every complete ``"bbox_2d": [...]`` / ``"point_2d": [...]`` in broken JSON."""
    items = []
    for m in _KEYED.finditer(text):
        try:
            coords = json.loads(f"[{m.group(2)}]")
        except (ValueError, RecursionError):
            coords = m.group(2)
        rest = text[m.end():]
        end = min((i for i in (rest.find("{"), rest.find("}")) if i >= 0), default=len(rest))
        label = _LABEL.search(text[max(0, text.rfind("{", 0, m.start())):m.start()] + rest[:end])
        items.append({m.group(1): coords, "label": label.group(1) if label else ""})
    return items


def parse_grounding(text: Any, width: int, height: int) -> tuple[LocatedObject, ...]:
    """Read the objects a Qwen3-VL grounding answer locates, in input-image pixels.

    Args:
        text: the model's answer to :func:`grounding_prompt`.
        width, height: size of the input image (the depth map's).

    Returns:
        At least one :class:`LocatedObject`, at most :data:`MAX_LOCATED`.

    Raises:
        GroundingError: nothing usable was located; ``reason`` says why (no JSON, an empty
            list, coordinates out of range, ...).
    """
    if not isinstance(text, str):
        raise GroundingError(f"the grounding answer is not text ({type(text).__name__})")
    if isinstance(width, bool) or isinstance(height, bool) or not (
            isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise GroundingError(f"image size must be positive whole pixels, got {width!r}x{height!r}")
    body = text[:_MAX_TEXT]
    fence = _FENCE.search(body)
    if fence is not None:
        body = fence.group(1)
    ok, value = _decode_first(body)
    items: list = []
    if ok and isinstance(value, dict):
        items = [value]
    elif ok and isinstance(value, list):
        bare = len(value) in (2, 4) and all(isinstance(c, (int, float)) for c in value)
        items = [value] if bare else value
    found, problems = _objects(items, width, height)
    if not found:
        # Broken or cut-off JSON, or a stray bracket before the real answer.
        found, more = _objects(_salvage(body), width, height)
        problems += [p for p in more if p not in problems]
    if found:
        return tuple(found)
    if problems:
        raise GroundingError("no usable object in the model's answer: " + "; ".join(problems[:3]))
    if ok and value == []:
        raise GroundingError("the model located nothing (empty list)")
    shown = " ".join(text.split())[:60]
    raise GroundingError(f"no grounding JSON in the model's answer: {shown!r}")


def _objects(items: list, width: int, height: int) -> tuple[list[LocatedObject], list[str]]:
    found, problems = [], []
    for item in items:
        obj, why = _from_item(item, width, height)
        if obj is not None:
            found.append(obj)
            if len(found) == MAX_LOCATED:
                break
        else:
            problems.append(why)
    return found, problems
