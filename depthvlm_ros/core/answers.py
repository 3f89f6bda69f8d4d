"""Answering a question about a processed frame: the model's text, or the depth map's numbers.

:func:`answer_question` is the one entry point the node and the replay share. It always asks
the model (its text is kept as ``model_answer``) and, depending on ``mode``, composes the final
text from measurements on the frame's depth map instead:

* ``auto``: measured whenever the query gives pixels or regions, the question writes some, or
  the model locates the object the question names; the model's text otherwise;
* ``measured``: always measured; with nothing to measure the answer says so and states no
  number;
* ``model``: the model's text; the given pixels and regions are still measured (as the node
  has always filled ``depths`` / ``points``).

An object named in words ("how far is the chair?") is located only when the question gives
nothing else to measure and uses the vocabulary of distance or size: the model is asked a
follow-up grounding question on the same frame context (its cached prefill is continued, no
second vision pass), its Qwen3-VL JSON is parsed, and the boxes and points are measured.

``SpatialResult`` maps onto ``depthvlm_ros/SpatialAnswer``: ``answer``, ``model_answer``,
``source`` (``SOURCE_*``), ``pixels`` / ``depths`` / ``points`` (from ``pixels``), ``regions``
(``RegionMeasurement[]``), ``status`` / ``status_reason`` (``STATUS_*``, same values).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import numpy as np

from .camera import Intrinsics
from .errors import InputError
from .spatial import (ORIGIN_LOCATED, ORIGIN_QUERY, GroundingError, LocatedObject,
                      ParsedQuestion, PixelMeasurements, RegionMeasurement, asks_about_object,
                      compose_answer, grounding_prompt, measure_pixels, measure_regions,
                      not_located_text, nothing_to_measure_text, parse_grounding,
                      parse_question, validate_pixels, validate_regions)

__all__ = ["ANSWER_MODES", "SOURCE_NONE", "SOURCE_MEASURED", "SOURCE_MODEL", "STATUS_OK",
           "STATUS_ERROR", "GROUNDING_MAX_NEW_TOKENS", "AnswerModel", "MeasuredAnswer",
           "SpatialResult", "answer_question", "measured_answer", "measure_cost"]

#: Values of ``DepthVLMConfig.answer_mode``.
ANSWER_MODES = ("auto", "measured", "model")

#: ``SpatialResult.source`` (``SpatialAnswer.SOURCE_*``): no answer (an error).
SOURCE_NONE = 0
#: The final text was composed from measurements on the depth map.
SOURCE_MEASURED = 1
#: The final text is the model's own.
SOURCE_MODEL = 2

#: ``SpatialResult.status``, the values of ``SpatialAnswer.STATUS_OK`` / ``STATUS_ERROR``.
STATUS_OK = 0
STATUS_ERROR = 2

#: Token limit of the grounding follow-up: one box is about 30 tokens of JSON (Qwen writes
#: numbers digit by digit), so this leaves room for a few objects.
GROUNDING_MAX_NEW_TOKENS = 128


class AnswerModel(Protocol):
    """What :func:`answer_question` needs of a pipeline (``DepthVLMPipeline`` has it)."""

    def answer(self, context: Any, question: str,
               max_new_tokens: int | None = None) -> Any:  # an object with ``.text``
        ...


def _no_pixels() -> PixelMeasurements:
    return PixelMeasurements(np.zeros((0, 2)), np.zeros(0, np.float32),
                             np.zeros((0, 3), np.float32), (), np.zeros(0, bool))


@dataclass
class MeasuredAnswer:
    """The measured side of an answer (:func:`measured_answer`).

    Attributes:
        text: the composed answer (:func:`~depthvlm_ros.core.spatial.compose_answer`).
        pixels: every pixel measured: given, then written in the question (those not already
            given), then located as points.
        regions: every region measured: given, then written, then located as boxes.
        intent: what the question asks.
    """

    text: str
    pixels: PixelMeasurements
    regions: tuple[RegionMeasurement, ...]
    intent: str

    @property
    def has_targets(self) -> bool:
        return len(self.pixels) > 0 or len(self.regions) > 0


@dataclass
class SpatialResult:
    """One answered question.

    Attributes:
        question: the question as asked.
        answer: the final text ("" when ``status`` is an error).
        model_answer: the model's own text, as generated ("" if it was never asked).
        source: :data:`SOURCE_MEASURED`, :data:`SOURCE_MODEL`, or :data:`SOURCE_NONE` on error.
        status: :data:`STATUS_OK` or :data:`STATUS_ERROR`.
        status_reason: why, for an error; "" otherwise.
        pixels: every pixel measured (see :class:`MeasuredAnswer`), same order as
            ``SpatialAnswer.pixels`` / ``depths`` / ``points``.
        regions: every region measured (``SpatialAnswer.regions``).
        located: what the grounding follow-up located (also measured in ``pixels`` /
            ``regions`` with ``ORIGIN_LOCATED``).
        grounding_answer: the model's raw grounding text ("" when it was not asked).
        grounding_error: why grounding located nothing ("" when it was not asked or worked).
        intent: what the question asks ("" in ``model`` mode).
        timings: seconds: ``model_s`` (the answer), ``grounding_s`` (the follow-up, 0 if
            none), ``measure_s`` (parsing, measuring and wording), ``total_s``.
    """

    question: str
    answer: str = ""
    model_answer: str = ""
    source: int = SOURCE_NONE
    status: int = STATUS_OK
    status_reason: str = ""
    pixels: PixelMeasurements = field(default_factory=_no_pixels)
    regions: tuple[RegionMeasurement, ...] = ()
    located: tuple[LocatedObject, ...] = ()
    grounding_answer: str = ""
    grounding_error: str = ""
    intent: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def located_points(self) -> tuple[tuple[float, float], ...]:
        """Where each located object is, as ``(u, v)`` input pixels (a box by its centre)."""
        return tuple(o.point for o in self.located)


def _merge_pixels(given: np.ndarray, parsed: ParsedQuestion,
                  located: Sequence[LocatedObject]) -> tuple[np.ndarray, list[str]]:
    """Given pixels, then written ones not already given, then located points, with labels."""
    coords = [tuple(p) for p in given.tolist()]
    labels = [""] * len(coords)
    for w in parsed.pixels:
        if (w.u, w.v) in coords:  # the demo writes the pixels it also sends
            i = coords.index((w.u, w.v))
            labels[i] = labels[i] or w.label
        else:
            coords.append((w.u, w.v))
            labels.append(w.label)
    for obj in located:
        if obj.pixel is not None:
            coords.append(obj.pixel)
            labels.append(obj.label)
    return np.array(coords, dtype=np.float64).reshape(-1, 2), labels


def measured_answer(depth: np.ndarray, intrinsics: Intrinsics, question: str,
                    pixels: Sequence | np.ndarray = (), regions: Sequence[Any] = (),
                    located: Sequence[LocatedObject] = (),
                    parsed: ParsedQuestion | None = None) -> MeasuredAnswer:
    """Parse, measure and word an answer without the model.

    Args:
        depth: ``(H, W)`` metres at the input resolution, NaN invalid.
        intrinsics: of the input image (scaled to the depth's size when they differ).
        question: the question (pixels, regions, threshold and intent are read from it).
        pixels: pixels given with the query, ``(N, 2|3)``; outside the image they get NaN.
        regions: regions given with the query (see
            :func:`~depthvlm_ros.core.spatial.validate_regions`).
        located: objects the model located (:func:`~depthvlm_ros.core.spatial.parse_grounding`).
        parsed: the question already parsed (saves parsing it twice).

    Raises:
        InputError: invalid pixels or regions, or a question naming a pixel outside the image.
    """
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    h, w = depth.shape
    given_px = validate_pixels(pixels)
    given_rois = validate_regions(regions, w, h)
    parsed = parsed if parsed is not None else parse_question(question, w, h)
    coords, labels = _merge_pixels(given_px, parsed, located)
    boxes = [o for o in located if o.region is not None]
    rois = list(given_rois) + list(parsed.regions) + [o.region for o in boxes]
    names = [""] * (len(given_rois) + len(parsed.regions)) + [o.label for o in boxes]
    origins = [ORIGIN_QUERY] * (len(given_rois) + len(parsed.regions)) + \
        [ORIGIN_LOCATED] * len(boxes)
    px = measure_pixels(depth, intrinsics, coords, labels)
    regs = measure_regions(depth, intrinsics, rois, names, origins)
    text = compose_answer(px, regs, parsed.intent, parsed.statistic, parsed.threshold)
    return MeasuredAnswer(text, px, regs, parsed.intent)


def answer_question(pipeline: AnswerModel, context: Any, depth: np.ndarray,
                    intrinsics: Intrinsics, question: str, pixels: Sequence | np.ndarray = (),
                    regions: Sequence[Any] = (), mode: str = "auto",
                    max_new_tokens: int | None = None,
                    grounding_max_new_tokens: int = GROUNDING_MAX_NEW_TOKENS) -> SpatialResult:
    """Answer one question about a processed frame.

    Args:
        pipeline: a :class:`~depthvlm_ros.core.pipeline.DepthVLMPipeline` (or anything with
            its ``answer(context, question, max_new_tokens)``).
        context: the frame's ``FrameContext`` (its cached prefill serves the answer and the
            grounding follow-up).
        depth: ``(H, W)`` metres of the frame at the input resolution, NaN invalid.
        intrinsics: of the input image.
        question: the question.
        pixels: pixels given with the query, ``(N, 2|3)`` ``(u, v[, ignored])``.
        regions: regions given with the query: ``sensor_msgs/RegionOfInterest`` messages,
            :class:`~depthvlm_ros.core.spatial.Region` or ``(x_offset, y_offset, width,
            height)``.
        mode: ``auto``, ``measured`` or ``model`` (see the module docstring).
        max_new_tokens: limit of the model's answer (None: the pipeline's config).
        grounding_max_new_tokens: limit of the grounding follow-up.

    Returns:
        The :class:`SpatialResult`. A bad input (question, pixels, regions, mode: anything that
        raises :class:`~depthvlm_ros.core.errors.InputError`) gives ``STATUS_ERROR`` with the
        reason; any other exception (a model failure) propagates to the caller.
    """
    t_start = time.perf_counter()
    result = SpatialResult(question=question if isinstance(question, str) else str(question))
    timings = {"model_s": 0.0, "grounding_s": 0.0, "measure_s": 0.0}
    try:
        if mode not in ANSWER_MODES:
            raise InputError(f"answer mode must be one of {', '.join(ANSWER_MODES)}, "
                             f"got {mode!r}")
        t = time.perf_counter()
        if depth.ndim != 2:
            raise InputError(f"depth must be 2-D, got shape {depth.shape}")
        h, w = depth.shape
        # Everything about the inputs is checked before the model spends time on them.
        validate_pixels(pixels)
        validate_regions(regions, w, h)
        parsed = None if mode == "model" else parse_question(question, w, h)
        timings["measure_s"] += time.perf_counter() - t

        t = time.perf_counter()
        result.model_answer = pipeline.answer(context, question,
                                              max_new_tokens=max_new_tokens).text
        timings["model_s"] = time.perf_counter() - t

        t = time.perf_counter()
        if parsed is None:
            measured = measured_answer(depth, intrinsics, question, pixels, regions,
                                       parsed=ParsedQuestion())
            result.pixels, result.regions = measured.pixels, measured.regions
            result.answer, result.source = result.model_answer, SOURCE_MODEL
            timings["measure_s"] += time.perf_counter() - t
            return result
        measured = measured_answer(depth, intrinsics, question, pixels, regions, parsed=parsed)
        timings["measure_s"] += time.perf_counter() - t
        result.intent = measured.intent
        asked_grounding = not measured.has_targets and asks_about_object(question)
        if asked_grounding:
            t = time.perf_counter()
            _ground(pipeline, context, question, w, h, grounding_max_new_tokens, result)
            timings["grounding_s"] = time.perf_counter() - t
            if result.located:
                t = time.perf_counter()
                measured = measured_answer(depth, intrinsics, question, pixels, regions,
                                           result.located, parsed=parsed)
                timings["measure_s"] += time.perf_counter() - t
        result.pixels, result.regions = measured.pixels, measured.regions
        if measured.has_targets:
            result.answer, result.source = measured.text, SOURCE_MEASURED
        elif asked_grounding:
            result.answer, result.source = not_located_text(), SOURCE_MEASURED
        elif mode == "measured":
            result.answer, result.source = nothing_to_measure_text(), SOURCE_MEASURED
        else:
            result.answer, result.source = result.model_answer, SOURCE_MODEL
    except InputError as exc:
        result.status, result.status_reason = STATUS_ERROR, str(exc)
        result.answer, result.source = "", SOURCE_NONE
        result.pixels, result.regions, result.located = _no_pixels(), (), ()
    finally:
        timings["total_s"] = time.perf_counter() - t_start
        result.timings = timings
    return result


def _ground(pipeline: AnswerModel, context: Any, question: str, width: int, height: int,
            max_new_tokens: int, result: SpatialResult) -> None:
    """Ask the model where the named object is; fill ``located`` or ``grounding_error``."""
    config = getattr(pipeline, "config", None)
    prompt = grounding_prompt(question, getattr(config, "max_query_chars", None))
    try:
        result.grounding_answer = pipeline.answer(context, prompt,
                                                  max_new_tokens=max_new_tokens).text
        result.located = parse_grounding(result.grounding_answer, width, height)
    except GroundingError as exc:
        result.grounding_error = exc.reason
    except InputError as exc:  # the follow-up itself was refused (e.g. too long)
        result.grounding_error = str(exc)


def measure_cost(depth: np.ndarray, intrinsics: Intrinsics, question: str,
                 pixels: Sequence | np.ndarray = (), regions: Sequence[Any] = (),
                 located: Sequence[LocatedObject] = (), repeats: int = 20,
                 pipeline: AnswerModel | None = None, context: Any = None,
                 max_new_tokens: int | None = None) -> dict[str, float]:
    """Seconds the measured path costs, beside the model's answer when a pipeline is given.

    Not a test: a figure for the perf command, to show that measuring is a small fraction of
    answering. Each path runs once to warm up, then ``repeats`` times.

    Returns:
        ``measure_s`` (median of :func:`measured_answer`), ``model_s`` (median of
        ``pipeline.answer``; NaN without a pipeline), ``ratio`` (``measure_s / model_s``) and
        ``repeats``.
    """
    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")

    def median_seconds(call) -> float:
        call()
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            call()
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)

    measure_s = median_seconds(lambda: measured_answer(depth, intrinsics, question, pixels,
                                                       regions, located))
    model_s = float("nan")
    if pipeline is not None:
        model_s = median_seconds(lambda: pipeline.answer(context, question,
                                                         max_new_tokens=max_new_tokens))
    ratio = measure_s / model_s if model_s > 0 else float("nan")
    return {"measure_s": measure_s, "model_s": model_s, "ratio": ratio, "repeats": float(repeats)}
