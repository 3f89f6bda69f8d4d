"""The answer text, composed from measurements only.

Plain sentences a person can read aloud. Distances are metres with two decimals, each exactly a
measured value (or a difference or straight-line distance of measured values) rounded to that
precision; the other numbers are the pixel coordinates the question or the query gave, and a
threshold repeated as the question wrote it. Depths are along the camera's optical axis (what a robot's
depth image holds); points are in the camera optical frame (x right, y down, z forward).

How each target counts, when targets are compared or tested against a threshold:

* a pixel: its depth (median of the valid depths in its 3x3 window);
* a region: for "which is nearer" and "distance between", its median depth and its centroid
  (what mostly fills it); for a threshold, its nearest valid point (whether *any* part of it is
  closer than the threshold).

A target without a valid depth is named as such and never given a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .pixels import PixelMeasurements
from .question import (INTENT_DISTANCE, INTENT_FARTHER, INTENT_NEARER, INTENT_SIZE,
                       INTENT_THRESHOLD, Threshold)
from .regions import RegionMeasurement

__all__ = ["format_metres", "format_coordinate", "compose_answer", "nothing_to_measure_text",
           "not_located_text"]


def format_metres(value: float) -> str:
    """``value`` with two decimals, as every distance in an answer is printed (no "-0.00")."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def format_coordinate(value: float) -> str:
    """A pixel coordinate as the question would write it: ``160``, ``12.25``."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _pixel_text(u: float, v: float) -> str:
    return f"pixel ({format_coordinate(u)}, {format_coordinate(v)})"


def _xyz_text(point: Sequence[float]) -> str:
    x, y, z = (format_metres(c) for c in point)
    return f"x = {x} m, y = {y} m, z = {z} m"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def nothing_to_measure_text() -> str:
    """The answer when the question gives nothing to measure (measured mode)."""
    return ("Nothing in this question points at a place in the image that I can measure: no "
            "pixel, region or located object. So I give no measured number.")


def not_located_text() -> str:
    """The answer when the model could not locate what the question names."""
    return ("I could not locate what the question refers to in the image, so I have no "
            "measured answer.")


@dataclass(frozen=True)
class _Target:
    """A pixel or a region, as the sentences refer to it."""

    name: str                       # "the point at pixel (160, 120)", "point A", "the chair"
    depth: float                    # its distance for comparisons (NaN: none)
    point: tuple[float, float, float]
    nearest: float                  # its nearest valid depth, for thresholds
    nearest_where: str              # the nearest point, as a phrase
    is_region: bool
    outside: bool = False


def _pixel_targets(pixels: PixelMeasurements) -> list[_Target]:
    out = []
    for (u, v), d, p, label, inside in zip(pixels.pixels, pixels.depths, pixels.points,
                                            pixels.labels, pixels.inside):
        where = _pixel_text(u, v)
        if not label:
            name = f"the point at {where}"
        elif len(label) == 1 and label.isupper():
            name = f"point {label} at {where}"
        else:
            name = f"the {label} at {where}"
        d = float(d)
        point = tuple(float(c) for c in p)
        out.append(_Target(name, d, point, d, name, False, not bool(inside)))
    return out


def _region_name(r: RegionMeasurement) -> str:
    if r.label:
        return f"the {r.label}"
    first = _pixel_text(r.roi.x_offset, r.roi.y_offset)
    u1, v1 = r.roi.last_pixel
    return f"the region from {first} to ({u1}, {v1})"


def _region_targets(regions: Sequence[RegionMeasurement]) -> list[_Target]:
    out = []
    for r in regions:
        name = _region_name(r)
        where = f"at {_pixel_text(*r.nearest_pixel)} in {name}" if r.valid else name
        out.append(_Target(name, r.median_depth, r.centroid, r.nearest_depth, where, True))
    return out


def _no_depth(t: _Target) -> str:
    if t.outside:
        return f"{_capital(t.name)} is outside the image, so it has no depth."
    if t.is_region:
        return f"{_capital(t.name)} has no valid depth, so I cannot measure it."
    return f"There is no valid depth at {t.name}, so I cannot say how far it is."


def _describe_pixel(t: _Target) -> str:
    return (f"{_capital(t.name)} is {format_metres(t.depth)} m from the camera along its "
            f"optical axis, at {_xyz_text(t.point)} in the camera frame.")


def _describe_region(r: RegionMeasurement, intent: str, statistic: str) -> str:
    name = _region_name(r)
    if not r.valid:
        return f"{_capital(name)} has no valid depth, so I cannot measure it."
    u1, v1 = r.roi.last_pixel
    box = (f" (box from {_pixel_text(r.roi.x_offset, r.roi.y_offset)} to ({u1}, {v1}))"
           if r.label else "")
    nearest = (f"its nearest valid point is {format_metres(r.nearest_depth)} m from the "
               f"camera, at {_pixel_text(*r.nearest_pixel)} ({_xyz_text(r.nearest_point)})")
    median = format_metres(r.median_depth)
    size = (f"at the median depth it spans {format_metres(r.width_m)} m wide and "
            f"{format_metres(r.height_m)} m high")
    centroid = f"the centroid of its points is at {_xyz_text(r.centroid)}"
    head = f"{_capital(name)}{box}"
    if statistic == "mean":
        return (f"{head}: the mean depth is {format_metres(r.mean_depth)} m and the median "
                f"{median} m; {nearest}; {centroid}; {size}.")
    if intent == INTENT_SIZE:
        return (f"{head}: at its median depth of {median} m it spans "
                f"{format_metres(r.width_m)} m wide and {format_metres(r.height_m)} m high; "
                f"{nearest}; {centroid}.")
    if statistic == "median":
        return f"{head}: the median depth is {median} m; {nearest}; {centroid}; {size}."
    return f"{head}: {nearest}; the median depth is {median} m; {centroid}; {size}."


def _describe_all(pixels: PixelMeasurements, regions: Sequence[RegionMeasurement], intent: str,
                  statistic: str) -> list[str]:
    out = []
    for t in _pixel_targets(pixels):
        out.append(_describe_pixel(t) if math.isfinite(t.depth) else _no_depth(t))
    out += [_describe_region(r, intent, statistic) for r in regions]
    return out


def _distance_3d(a: _Target, b: _Target) -> float:
    return float(np.linalg.norm(np.subtract(a.point, b.point, dtype=np.float64)))


def _from_camera(t: _Target) -> str:
    which = " (median depth)" if t.is_region else ""
    return f"{format_metres(t.depth)} m from the camera{which}"


def _compare(targets: list[_Target], farther: bool) -> list[str]:
    valid = sorted((t for t in targets if math.isfinite(t.depth)), key=lambda t: t.depth,
                   reverse=farther)
    missing = [_no_depth(t) for t in targets if not math.isfinite(t.depth)]
    if len(valid) < 2:
        said = [_describe_pixel(t) if not t.is_region else
                f"{_capital(t.name)} is {_from_camera(t)}." for t in valid]
        return said + missing + ["So I cannot compare them."]
    first, second = valid[0], valid[1]
    if len(valid) == 2:
        if format_metres(first.depth) == format_metres(second.depth):
            text = (f"{_capital(first.name)} and {second.name} are equally far from the camera: "
                    f"{format_metres(first.depth)} m each.")
        else:
            word, rel = ("farther", "farther") if farther else ("nearer", "closer")
            gap = format_metres(abs(first.depth - second.depth))
            text = (f"{_capital(first.name)} is {word}: {_from_camera(first)}, against "
                    f"{format_metres(second.depth)} m for {second.name}, {gap} m {rel}.")
        sentences = [text]
        if not first.is_region and not second.is_region:
            sentences.append(f"The two points are {format_metres(_distance_3d(first, second))} m "
                             "apart in a straight line.")
        return sentences + missing
    word = "farthest" if farther else "nearest"
    rest = "; ".join(f"{t.name} at {format_metres(t.depth)} m" for t in valid[1:])
    return [f"{_capital(first.name)} is {word}, at {_from_camera(first)}; then {rest}."] + missing


def _between(targets: list[_Target]) -> list[str]:
    a, b = targets
    if not (math.isfinite(a.depth) and math.isfinite(b.depth)):
        return [_no_depth(t) for t in targets if not math.isfinite(t.depth)] + [
            "So I cannot say how far apart they are."]
    kind = "centroids" if a.is_region or b.is_region else "points"
    return [f"{_capital(a.name)} and {b.name} are {format_metres(_distance_3d(a, b))} m apart "
            f"in a straight line between their {kind}; {a.name} is {_from_camera(a)} and "
            f"{b.name} {_from_camera(b)}."]


def _threshold(targets: list[_Target], threshold: Threshold) -> list[str]:
    valid = [t for t in targets if math.isfinite(t.nearest)]
    if not valid:
        return [_no_depth(t) for t in targets] + ["So I cannot tell."]
    t = min(valid, key=lambda t: t.nearest)
    yes = t.nearest < threshold.metres if threshold.closer else t.nearest > threshold.metres
    lead = "Yes" if yes else "No"
    even = "even " if yes and not threshold.closer else ""
    verdict = threshold.phrase if yes else f"not {threshold.phrase}"
    return [f"{lead}: {even}the nearest measured point, {t.nearest_where}, is "
            f"{format_metres(t.nearest)} m from the camera, {verdict}."]


def compose_answer(pixels: PixelMeasurements, regions: Sequence[RegionMeasurement],
                   intent: str, statistic: str = "",
                   threshold: Threshold | None = None) -> str:
    """The answer text for measured pixels and regions.

    Args:
        pixels: the measured pixels (given, written in the question, located as points).
        regions: the measured regions (given, written, located as boxes).
        intent: what the question asks (:data:`~.question.INTENTS`).
        statistic: ``"mean"`` / ``"median"`` when the question asks for one.
        threshold: the threshold of a ``threshold`` question.

    Returns:
        The text. With one target: its measurements. With two or more: the comparison, the
        straight-line distance or the threshold verdict the intent asks for, else each one's
        measurements.
        With none: :func:`nothing_to_measure_text`.
    """
    targets = _pixel_targets(pixels) + _region_targets(regions)
    if not targets:
        return nothing_to_measure_text()
    if intent == INTENT_THRESHOLD and threshold is not None:
        sentences = _threshold(targets, threshold)
    elif intent in (INTENT_NEARER, INTENT_FARTHER) and len(targets) >= 2:
        sentences = _compare(targets, intent == INTENT_FARTHER)
    elif intent == INTENT_DISTANCE and len(targets) == 2:
        sentences = _between(targets)
    else:
        sentences = _describe_all(pixels, regions, intent, statistic)
    return " ".join(sentences)
