"""What a question refers to and what it asks, read from its text.

Places written in a question (coordinates in input-image pixels, ``u`` column, ``v`` row):

* ``(u=160, v=120)`` (also ``u = 160.5``), anywhere: the form of the benchmark and the demo;
* ``(160, 120)`` once the word "pixel" or "pixels" has appeared before it;
* a region from two such corners, the first after "top-left" (or "top left", "upper left")
  and the second after "bottom-right" ("bottom right", "lower right"), both inclusive, as the
  benchmark writes its region questions;
* a region ``(u0, v0, u1, v1)`` (inclusive corners) right after "box", "region" or "rectangle".

A single capital letter just before a pixel ("A at pixel (u=3, v=4)", "point B (u=5, v=6)")
names it in the answer. Distance thresholds: "closer than 1.5 m", "nearer than 80 cm",
"within 2 metres", "less than 3 meters away", "farther than 2 m", "more than 1 m away"
(m, cm, mm, metre(s), meter(s) and the centi-/milli- words).

What it asks (:data:`INTENTS`), first match wins: a threshold; the distance *between* targets
("distance ... between", "apart", "from each other"); which is nearer ("nearer", "closer",
"nearest", "closest") or farther ("farther", "further", ...); how big ("how big/large/wide/
tall/high/long", "size", "dimensions", "width", "height"); otherwise how far (``depth``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError
from .regions import Region

__all__ = ["INTENTS", "INTENT_DEPTH", "INTENT_NEARER", "INTENT_FARTHER", "INTENT_DISTANCE",
           "INTENT_SIZE", "INTENT_THRESHOLD", "Threshold", "WrittenPixel", "ParsedQuestion",
           "parse_question", "question_intent", "asks_about_object"]

INTENT_DEPTH = "depth"
INTENT_NEARER = "nearer"
INTENT_FARTHER = "farther"
INTENT_DISTANCE = "distance"
INTENT_SIZE = "size"
INTENT_THRESHOLD = "threshold"
#: Every intent :func:`question_intent` can return.
INTENTS = (INTENT_DEPTH, INTENT_NEARER, INTENT_FARTHER, INTENT_DISTANCE, INTENT_SIZE,
           INTENT_THRESHOLD)

_NUM = r"[-+]?\d+(?:\.\d+)?"
_UV = re.compile(rf"\(\s*u\s*=\s*({_NUM})\s*,\s*v\s*=\s*({_NUM})\s*\)", re.IGNORECASE)
_PAIR = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)")
_QUAD = re.compile(rf"\b(?:box|region|rectangle)\b[^()]{{0,24}}\(\s*({_NUM})\s*,\s*({_NUM})\s*,"
                   rf"\s*({_NUM})\s*,\s*({_NUM})\s*\)", re.IGNORECASE)
_PIXEL_WORD = re.compile(r"\bpixels?\b", re.IGNORECASE)
_TOP_LEFT = re.compile(r"\b(?:top|upper)[- ]?left\b", re.IGNORECASE)
_BOTTOM_RIGHT = re.compile(r"\b(?:bottom|lower)[- ]?right\b", re.IGNORECASE)
# Case-sensitive on purpose: only a capital letter is a name ("A at pixel", "point B").
_LETTER_BEFORE = re.compile(r"(?:\b([A-Z])\s+(?:is\s+)?(?:at|=|:)\s*(?:the\s+)?|"
                            r"\b[Pp]oint\s+([A-Z])\s*(?:at\s+|:\s*)?)(?:pixel\s*)?$")

_UNITS = {"mm": 0.001, "millimeter": 0.001, "millimetre": 0.001,
          "cm": 0.01, "centimeter": 0.01, "centimetre": 0.01,
          "m": 1.0, "meter": 1.0, "metre": 1.0}
_UNIT = r"(?:millimet(?:er|re)s?|mm|centimet(?:er|re)s?|cm|met(?:er|re)s?|m)\b"
_CLOSER_WORDS = ("closer", "nearer", "less", "within", "under", "below")
_THRESHOLD = re.compile(
    r"\b(closer|nearer|less|within|under|below|farther|further|more|beyond|over|above)"
    rf"\s+(?:than\s+)?(\d+(?:\.\d+)?)\s*({_UNIT})", re.IGNORECASE)

_DISTANCE = re.compile(r"\bdistance\b[^?]*\bbetween\b|\bapart\b|\bfrom each other\b",
                       re.IGNORECASE)
_TO_CAMERA = re.compile(r"\bbetween\s+(?:the\s+)?camera\b|\bcamera\s+and\b", re.IGNORECASE)
_NEARER = re.compile(r"\b(?:nearer|closer|nearest|closest)\b", re.IGNORECASE)
_FARTHER = re.compile(r"\b(?:farther|further|farthest|furthest)\b", re.IGNORECASE)
_SIZE = re.compile(r"\bhow\s+(?:big|large|wide|tall|high|long)\b|\b(?:size|dimensions?|width|"
                   r"height)\b", re.IGNORECASE)
_MEAN = re.compile(r"\b(?:mean|average)\b", re.IGNORECASE)
_MEDIAN = re.compile(r"\bmedian\b", re.IGNORECASE)
_SPATIAL = re.compile(
    r"\b(?:how\s+(?:far|close|near|big|large|wide|tall|high|long|deep)|distance|depth|far|near|"
    r"nearer|nearest|close|closer|closest|farther|further|farthest|furthest|away|size|"
    r"dimensions?|width|height|wide|tall|met(?:er|re)s?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Threshold:
    """A distance a question compares against.

    Attributes:
        metres: the distance in metres.
        closer: True for "closer than" / "within" (yes when something measured is nearer),
            False for "farther than" (yes when even the nearest measurement is farther).
        phrase: how the answer repeats it, e.g. ``"closer than 1.5 m"``, ``"within 80 cm"``:
            the number exactly as the question wrote it.
    """

    metres: float
    closer: bool
    phrase: str


@dataclass(frozen=True)
class WrittenPixel:
    """A pixel written in the question: ``(u, v)`` and its letter name (``""`` if none)."""

    u: float
    v: float
    label: str = ""


@dataclass(frozen=True)
class ParsedQuestion:
    """Everything :func:`parse_question` read from a question.

    Attributes:
        pixels: pixels written in the question, in the order written (corner pixels of
            written regions are not repeated here).
        regions: regions written in the question.
        threshold: the distance threshold, if any.
        intent: one of :data:`INTENTS`.
        statistic: ``"mean"`` or ``"median"`` when the question asks for one, else ``""``.
    """

    pixels: tuple[WrittenPixel, ...] = ()
    regions: tuple[Region, ...] = ()
    threshold: Threshold | None = None
    intent: str = INTENT_DEPTH
    statistic: str = ""


def _coord_text(u: float, v: float) -> str:
    return f"(u={u:g}, v={v:g})"


def _pixel_index(u: float, v: float, width: int, height: int, what: str) -> tuple[int, int]:
    # The pixel whose centre is nearest; the image covers [-0.5, size - 0.5) on each axis.
    iu, iv = math.floor(u + 0.5), math.floor(v + 0.5)
    if not (0 <= iu < width and 0 <= iv < height):
        raise InputError(f"the question names {what} {_coord_text(u, v)}, outside the "
                         f"{width}x{height} image")
    return iu, iv


def _corner_region(u0: float, v0: float, u1: float, v1: float, width: int,
                   height: int) -> Region:
    a = _pixel_index(u0, v0, width, height, "the corner pixel")
    b = _pixel_index(u1, v1, width, height, "the corner pixel")
    if b[0] < a[0] or b[1] < a[1]:
        raise InputError(f"the question's region has its bottom-right corner "
                         f"{_coord_text(u1, v1)} left of or above its top-left corner "
                         f"{_coord_text(u0, v0)}")
    return Region.from_corners(a[0], a[1], b[0], b[1])


def _threshold(text: str) -> Threshold | None:
    m = _THRESHOLD.search(text)
    if m is None:
        return None
    word, number, unit = m.group(1).lower(), m.group(2), m.group(3).lower()
    base = unit[:-1] if unit.endswith("s") else unit
    closer = word in _CLOSER_WORDS
    short = {0.001: "mm", 0.01: "cm", 1.0: "m"}[_UNITS[base]]
    verb = "within" if word == "within" else ("closer than" if closer else "farther than")
    return Threshold(float(number) * _UNITS[base], closer, f"{verb} {number} {short}")


def question_intent(text: str) -> str:
    """What the question asks, one of :data:`INTENTS` (see the module docstring)."""
    if _threshold(text) is not None:
        return INTENT_THRESHOLD
    if _DISTANCE.search(text) and not _TO_CAMERA.search(text):
        return INTENT_DISTANCE
    if _NEARER.search(text):
        return INTENT_NEARER
    if _FARTHER.search(text):
        return INTENT_FARTHER
    if _SIZE.search(text):
        return INTENT_SIZE
    return INTENT_DEPTH


def asks_about_object(text: str) -> bool:
    """Whether a question with no pixel or region asks something the depth map can answer.

    True when it uses the vocabulary of distance or size ("how far is the chair?", "is the
    door closer than 2 m?", "how big is the box?"); then the model is asked where the object
    is. "Is the scene indoors or outdoors?" is not such a question.
    """
    return bool(_SPATIAL.search(text))


def _coordinates(text: str) -> list[tuple[int, int, float, float]]:
    """``(start, end, u, v)`` of each written pixel, in order of appearance."""
    found = [(m.start(), m.end(), float(m.group(1)), float(m.group(2)))
             for m in _UV.finditer(text)]
    first_pixel_word = _PIXEL_WORD.search(text)
    if first_pixel_word is not None:
        found += [(m.start(), m.end(), float(m.group(1)), float(m.group(2)))
                  for m in _PAIR.finditer(text, first_pixel_word.end())]
    return sorted(found)


def parse_question(text: str, width: int, height: int) -> ParsedQuestion:
    """Read the pixels, regions, threshold and intent written in a question.

    Args:
        text: the question.
        width, height: size of the input image the coordinates refer to.

    Returns:
        The :class:`ParsedQuestion`.

    Raises:
        InputError: the question names a pixel or region corner outside the image (the message
            names it), or a region whose corners are in the wrong order.
    """
    if not isinstance(text, str):
        raise InputError("question must be a string")
    regions: list[Region] = []
    spans: list[tuple[int, int]] = []
    for m in _QUAD.finditer(text):
        u0, v0, u1, v1 = (float(g) for g in m.groups())
        regions.append(_corner_region(u0, v0, u1, v1, width, height))
        spans.append((m.start(), m.end()))
    coords = [c for c in _coordinates(text)
              if not any(s <= c[0] < e for s, e in spans)]
    pixels: list[WrittenPixel] = []
    previous_end = 0
    pending_corner: tuple[float, float] | None = None
    for start, end, u, v in coords:
        before = text[previous_end:start]
        previous_end = end
        _pixel_index(u, v, width, height, "pixel")
        if _TOP_LEFT.search(before):
            pending_corner = (u, v)
            continue
        if pending_corner is not None and _BOTTOM_RIGHT.search(before):
            regions.append(_corner_region(*pending_corner, u, v, width, height))
            pending_corner = None
            continue
        if pending_corner is not None:  # a top-left corner with no bottom-right: a pixel
            pixels.append(WrittenPixel(*pending_corner))
            pending_corner = None
        letter = _LETTER_BEFORE.search(before)
        label = (letter.group(1) or letter.group(2)) if letter else ""
        pixels.append(WrittenPixel(u, v, label))
    if pending_corner is not None:
        pixels.append(WrittenPixel(*pending_corner))
    statistic = "mean" if _MEAN.search(text) else ("median" if _MEDIAN.search(text) else "")
    return ParsedQuestion(tuple(pixels), tuple(regions), _threshold(text), question_intent(text),
                          statistic)
