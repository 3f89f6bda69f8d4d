"""Measured answers: the text states only what the depth map says, and the modes choose it.

The numbers in every answer are parsed back and compared with the measurements rounded to the
printed two decimals; the grounding parser gets a dozen fixed model outputs; answer_question
runs with a stub model (fixed replies) and with the tiny random model on a real frame context.
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from depthvlm_ros.core.answers import (ANSWER_MODES, SOURCE_MEASURED, SOURCE_MODEL, SOURCE_NONE,
                                       STATUS_ERROR, STATUS_OK, answer_question, measure_cost,
                                       measured_answer)
from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.config import DepthVLMConfig, field_specs
from depthvlm_ros.core.errors import InputError
from depthvlm_ros.core.spatial import (GROUNDING_SCALE, MAX_LOCATED, ORIGIN_LOCATED,
                                       ORIGIN_QUERY, GroundingError, Region, grounding_prompt,
                                       parse_grounding, sample_depth)

W, H = 64, 48
INTR = Intrinsics(50.0, 52.0, 31.5, 23.5, W, H)

# A number followed by a unit of metres, and any number at all.
_METRES = re.compile(r"(-?\d+(?:\.\d+)?) m\b")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _depth(seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.4, 9.0, (H, W)).astype(np.float32)
    d[rng.random(d.shape) < 0.05] = np.nan
    return d


def _rounded(values) -> set[float]:
    return {float(f"{float(v):.2f}") for v in values}


def _check_numbers(text: str, measured, other=()) -> list[float]:
    """Every "X m" in ``text`` is a measured value at two decimals; every other number is one
    of ``other`` (pixel coordinates, a threshold as written). Returns the metres found."""
    metres = []
    for m in _METRES.finditer(text):
        assert re.fullmatch(r"-?\d+\.\d{2}", m.group(1)) or m.group(1) in other, \
            f"{m.group(1)} m is not printed with two decimals in: {text}"
        if m.group(1) not in other:
            metres.append(float(m.group(1)))
    assert set(metres) <= _rounded(measured), (sorted(set(metres) - _rounded(measured)), text)
    spans = {m.start(1) for m in _METRES.finditer(text)}
    loose = [m.group(0) for m in _NUMBER.finditer(text) if m.start() not in spans]
    assert set(loose) <= set(other), (loose, text)
    return metres


def _coords(*pixels) -> set[str]:
    return {f"{c:g}" for p in pixels for c in p}


def _pixel_values(ans, i):
    return [ans.pixels.depths[i], *ans.pixels.points[i]]


def _region_values(r):
    return [r.nearest_depth, *r.nearest_point, r.median_depth, *r.centroid, r.width_m,
            r.height_m, r.mean_depth]


# ------------------------------------------------------------------------------------------
# wording: numbers parsed back


def test_one_pixel_states_its_depth_and_point():
    d = _depth()
    ans = measured_answer(d, INTR, "How far is the point at pixel (u=20, v=10)?")
    assert len(ans.pixels) == 1 and ans.intent == "depth"
    found = _check_numbers(ans.text, _pixel_values(ans, 0), _coords((20, 10)))
    assert float(f"{ans.pixels.depths[0]:.2f}") in found
    assert sorted(found) == sorted(float(f"{v:.2f}") for v in _pixel_values(ans, 0))


def test_two_pixels_nearer_verdict_gap_and_distance():
    d = _depth(1)
    d[9:12, 19:22] = 1.0
    d[29:32, 49:52] = 4.0
    q = "Which is nearer, the point at (u=50, v=30) or the point at (u=20, v=10)?"
    ans = measured_answer(d, INTR, q)
    far, near = ans.pixels.depths
    assert (far, near) == (4.0, 1.0)
    assert ans.text.startswith("The point at pixel (20, 10) is nearer")
    gap = abs(float(far) - float(near))
    dist = float(np.linalg.norm(ans.pixels.points[0].astype(float) - ans.pixels.points[1]))
    found = _check_numbers(ans.text, [far, near, gap, dist], _coords((50, 30), (20, 10)))
    assert _rounded([far, near, gap, dist]) == set(found)
    farther = measured_answer(d, INTR, q.replace("nearer", "farther"))
    assert farther.text.startswith("The point at pixel (50, 30) is farther")


def test_nearer_verdict_follows_the_depth_at_named_points():
    d = _depth(2)
    for a, b in [((5, 5), (40, 30)), ((60, 40), (2, 3)), ((33, 20), (34, 21))]:
        q = (f"Two points are marked: A at pixel (u={a[0]}, v={a[1]}) and B at pixel "
             f"(u={b[0]}, v={b[1]}). Which one is closer to the camera? Answer A or B.")
        ans = measured_answer(d, INTR, q)
        da, db = (float(x) for x in ans.pixels.depths)
        assert ans.pixels.labels == ("A", "B")
        if f"{da:.2f}" == f"{db:.2f}":
            assert "equally far" in ans.text
        else:
            winner = "A" if da < db else "B"
            assert ans.text.startswith(f"Point {winner} at pixel"), ans.text


def test_distance_between_two_points():
    d = _depth(3)
    ans = measured_answer(d, INTR, "What is the distance in metres between the points "
                          "(u=4, v=18) and (u=60, v=18)?")
    assert ans.intent == "distance"
    dist = float(np.linalg.norm(ans.pixels.points[0].astype(float) - ans.pixels.points[1]))
    found = _check_numbers(ans.text, [dist, *ans.pixels.depths], _coords((4, 18), (60, 18)))
    assert found[0] == float(f"{dist:.2f}")


def test_many_pixels_each_with_depth_and_point():
    d = _depth(4)
    pixels = [(1, 2), (30.5, 20), (63, 47), (10, 40)]
    ans = measured_answer(d, INTR, "Depths please", pixels)
    values = [v for i in range(4) for v in _pixel_values(ans, i)]
    found = _check_numbers(ans.text, values, _coords(*pixels))
    assert len(found) == 16


def test_invalid_and_outside_pixels_get_no_number():
    d = _depth()
    d[:5, :5] = np.nan
    ans = measured_answer(d, INTR, "How far?", [(2, 2), (100, 3)])
    assert "no valid depth at the point at pixel (2, 2)" in ans.text
    assert "pixel (100, 3) is outside the image" in ans.text
    _check_numbers(ans.text, [], _coords((2, 2), (100, 3)))


@pytest.mark.parametrize("question, first", [
    ("What is in the box (10, 5, 29, 16)?", "nearest valid point"),
    ("What is the mean depth of the region (10, 5, 29, 16)?", "the mean depth is"),
    ("How big is the region (10, 5, 29, 16)?", "at its median depth of"),
])
def test_region_states_its_measurements(question, first):
    d = _depth(5)
    ans = measured_answer(d, INTR, question)
    (r,) = ans.regions
    assert r.roi == Region(10, 5, 20, 12) and r.origin == ORIGIN_QUERY and r.label == ""
    assert r.nearest_depth == float(np.nanmin(d[5:17, 10:30]))
    assert first in ans.text
    found = _check_numbers(ans.text, _region_values(r),
                           _coords((10, 5), (29, 16), r.nearest_pixel))
    for v in (r.nearest_depth, r.median_depth, r.width_m, r.height_m):
        assert float(f"{v:.2f}") in found


def test_given_region_and_threshold():
    d = np.full((H, W), 3.0, np.float32)
    d[20, 30] = 1.2
    for q, yes in [("Is anything closer than 1.5 m?", True), ("Is anything within 1 m?", False),
                   ("Is it all farther than 2 metres?", False),
                   ("Is it all farther than 100 cm?", True)]:
        ans = measured_answer(d, INTR, q, regions=[(20, 10, 20, 20)])
        assert ans.text.startswith("Yes" if yes else "No"), (q, ans.text)
        assert "1.20 m" in ans.text and "pixel (30, 20)" in ans.text
        phrase = re.search(r"\d+(?:\.\d+)?", q).group(0)
        _check_numbers(ans.text, [1.2], _coords((30, 20), (20, 10), (39, 29)) | {phrase})


def test_threshold_over_pixels_uses_the_nearest():
    d = np.full((H, W), 3.0, np.float32)
    d[9:12, 9:12] = 0.9
    ans = measured_answer(d, INTR, "Are these closer than 1 m?", [(40, 40), (10, 10)])
    assert ans.text.startswith("Yes: the nearest measured point, the point at pixel (10, 10)")


def test_region_without_valid_depth_says_so():
    d = np.full((H, W), np.nan, np.float32)
    ans = measured_answer(d, INTR, "How far?", regions=[Region(0, 0, 4, 4)])
    assert "has no valid depth" in ans.text and not _NUMBER.search(
        ans.text.replace("(0, 0)", "").replace("(3, 3)", ""))


@pytest.mark.parametrize("pixels, regions, match", [
    ([(1, 2, 3, 4)], (), "shape"),
    ([(float("inf"), 2)], (), "non-finite"),
    ((), [(0, 0, 0, 0)], "region 0 is empty"),
    ((), [(60, 40, 10, 10)], "reaches outside"),
    ((), ["abc"], "4 numbers"),
])
def test_bad_pixels_and_regions_are_input_errors(pixels, regions, match):
    with pytest.raises(InputError, match=match):
        measured_answer(_depth(), INTR, "How far?", pixels, regions)


# ------------------------------------------------------------------------------------------
# grounding


def test_grounding_prompt_quotes_the_question_within_the_limit():
    p = grounding_prompt("How far is the chair?")
    assert '"How far is the chair?"' in p and "bbox_2d" in p and "0-1000" in p
    long = grounding_prompt("How far is the chair? " * 50, max_chars=512)
    assert len(long) <= 512 and '..."' in long


# [100, 100, 300, 300] on 64 x 48 reaches x 6.4 .. 19.2 and y 4.8 .. 14.4 from the image's
# edges: the whole pixels it touches are columns 6 .. 19 and rows 4 .. 14.
_BOX = Region(6, 4, 14, 11)


@pytest.mark.parametrize("text, want", [
    ('[{"bbox_2d": [100, 100, 300, 300], "label": "chair"}]', [("chair", _BOX, None)]),
    ('```json\n[\n  {"bbox_2d": [100, 100, 300, 300], "label": "chair"}\n]\n```',
     [("chair", _BOX, None)]),
    ('{"bbox_2d": [100, 100, 300, 300], "label": "chair"}', [("chair", _BOX, None)]),
    ('Here it is: [{"bbox_2d": [100, 100, 300, 300], "label": "chair"}] Hope this helps!',
     [("chair", _BOX, None)]),
    ('[{"bbox_2d": [300, 300, 100, 100], "label": "chair"}]', [("chair", _BOX, None)]),
    ('[{"point_2d": [500, 500], "label": "cup"}]', [("cup", None, (31.5, 23.5))]),
    ('[{"bbox_2d": [0, 0, 1000, 1000], "label": "room"}, {"point_2d": [0, 1000]}]',
     [("room", Region(0, 0, 64, 48), None), ("", None, (0.0, 47.0))]),  # kept inside the image
    # cut off by the token limit: the complete object is kept
    ('```json\n[{"bbox_2d": [100, 100, 300, 300], "label": "chair"}, {"bbox_2d": [5',
     [("chair", _BOX, None)]),
    ('[{"bbox_2d": [100, 100, 300, 300], "label": "chair 2 (left)"}]', [("chair left", _BOX,
                                                                         None)]),
    ('[100, 100, 300, 300]', [("", _BOX, None)]),
])
def test_parse_grounding_valid_outputs(text, want):
    got = parse_grounding(text, W, H)
    assert [(o.label, o.region, o.pixel) for o in got] == want


@pytest.mark.parametrize("text, reason", [
    ("[]", "located nothing"),
    ("```json\n[]\n```", "located nothing"),
    ("I cannot see a chair in this image.", "no grounding JSON"),
    ('[{"bbox_2d": [100, 100, 1300, 300], "label": "chair"}]', "outside 0-1000"),
    ('[{"bbox_2d": [-5, 100, 300, 300]}]', "outside 0-1000"),
    ('[{"bbox_2d": [100, 100, 300], "label": "chair"}]', "expected 4 coordinates"),
    ('[{"bbox_2d": ["a", "b", "c", "d"]}]', "must be numbers"),
    ('[{"bbox_2d": [NaN, 1, 2, 3]}]', "outside 0-1000"),
    ('[{"label": "chair"}]', "no bbox_2d or point_2d"),
    ('{"bbox_2d": [1, 2, 3, 4', "no grounding JSON"),
    ("[" * 20000, "no grounding JSON"),
    ("[1" + "0" * 5000 + "]", "no grounding JSON"),
    ('"chair"', "no grounding JSON"),
    ("", "no grounding JSON"),
])
def test_parse_grounding_rejects_with_a_reason(text, reason):
    with pytest.raises(GroundingError, match=re.escape(reason)) as err:
        parse_grounding(text, W, H)
    assert isinstance(err.value, InputError) and err.value.reason


@pytest.mark.parametrize("text, size", [(None, (W, H)), (12, (W, H)), ("[]", (0, 5)),
                                        ("[]", (True, 5))])
def test_parse_grounding_bad_arguments_are_grounding_errors(text, size):
    with pytest.raises(GroundingError):
        parse_grounding(text, *size)


def test_parse_grounding_keeps_at_most_max_located():
    text = "[" + ", ".join('{"point_2d": [10, 10]}' for _ in range(MAX_LOCATED + 5)) + "]"
    assert len(parse_grounding(text, W, H)) == MAX_LOCATED


def test_relative_coordinates_scale_by_the_input_image_size():
    (obj,) = parse_grounding('{"bbox_2d": [250, 500, 750, 1000]}', 640, 480)
    assert obj.region == Region(160, 240, 320, 240)
    assert GROUNDING_SCALE == 1000.0


# ------------------------------------------------------------------------------------------
# answer_question


class StubPipeline:
    """Answers the question with ``text`` and the grounding prompt with ``grounding``."""

    def __init__(self, text="1111", grounding="[]"):
        self.text, self.grounding = text, grounding
        self.asked: list[str] = []
        self.config = SimpleNamespace(max_query_chars=512)

    def answer(self, context, question, max_new_tokens=None):
        self.asked.append(question)
        reply = self.grounding if "bbox_2d" in question else self.text
        return SimpleNamespace(text=reply, total_s=0.0)


def _ask(question, mode="auto", pixels=(), regions=(), **stub):
    pipe = StubPipeline(**stub)
    return pipe, answer_question(pipe, object(), _depth(7), INTR, question, pixels, regions,
                                 mode=mode)


def test_auto_measures_pixels_written_in_the_question():
    pipe, res = _ask("How far is the point at pixel (u=20, v=10) from the camera?",
                     text="1.11 meters")
    assert res.ok and res.source == SOURCE_MEASURED and res.model_answer == "1.11 meters"
    assert res.pixels.pixels.tolist() == [[20.0, 10.0]] and "1.11" not in res.answer
    assert pipe.asked == ["How far is the point at pixel (u=20, v=10) from the camera?"]
    assert set(res.timings) == {"model_s", "grounding_s", "measure_s", "total_s"}


def test_auto_does_not_repeat_pixels_both_given_and_written():
    _, res = _ask("Which is nearer, the point at (u=6, v=20) or the point at (u=26, v=6)?",
                  pixels=[(6, 20), (26, 6)])
    assert res.pixels.pixels.tolist() == [[6, 20], [26, 6]] and "nearer" in res.answer


def test_auto_without_anything_to_measure_is_the_model_text():
    pipe, res = _ask("Is the scene indoors or outdoors?", text="1111")
    assert res.ok and res.source == SOURCE_MODEL and res.answer == "1111"
    assert len(pipe.asked) == 1 and res.grounding_answer == ""


def test_auto_locates_a_named_object_and_measures_its_box():
    fenced = '```json\n[{"bbox_2d": [100, 100, 300, 300], "label": "chair"}]\n```'
    pipe, res = _ask("How far is the chair?", text="34.9 m", grounding=fenced)
    assert len(pipe.asked) == 2 and "How far is the chair?" in pipe.asked[1]
    assert res.source == SOURCE_MEASURED and res.model_answer == "34.9 m"
    (r,) = res.regions
    assert (r.roi, r.label, r.origin) == (_BOX, "chair", ORIGIN_LOCATED)
    assert res.located[0].label == "chair" and res.answer.startswith("The chair")
    assert r.nearest_depth == float(np.nanmin(_depth(7)[4:15, 6:20]))
    _check_numbers(res.answer, _region_values(r), _coords((6, 4), (19, 14), r.nearest_pixel))


def test_a_located_point_is_measured_as_a_pixel():
    _, res = _ask("Is the cup closer than 2 m?", grounding='[{"point_2d": [500, 500], '
                  '"label": "cup"}]')
    assert res.pixels.labels == ("cup",) and res.pixels.pixels.tolist() == [[31.5, 23.5]]
    assert res.answer.startswith(("Yes", "No")) and "the cup at pixel (31.5, 23.5)" in res.answer


def test_when_the_model_locates_nothing_the_answer_says_so():
    _, res = _ask("How far is the unicorn?", text="2.00 m", grounding="[]")
    assert res.ok and res.source == SOURCE_MEASURED and "could not locate" in res.answer
    assert res.grounding_error and res.located == () and not _NUMBER.search(res.answer)
    _, res = _ask("How far is the unicorn?", mode="measured", grounding="no idea")
    assert "could not locate" in res.answer and "no grounding JSON" in res.grounding_error


def test_measured_mode_with_nothing_to_measure_invents_no_number():
    pipe, res = _ask("Is the scene indoors or outdoors?", mode="measured", text="1111")
    assert res.ok and res.source == SOURCE_MEASURED and res.model_answer == "1111"
    assert "Nothing in this question" in res.answer and not _NUMBER.search(res.answer)
    assert len(pipe.asked) == 1  # not a question about an object's distance: no grounding


def test_model_mode_keeps_the_model_text_and_still_measures_given_pixels():
    pipe, res = _ask("How far is the point at pixel (u=20, v=10)?", mode="model",
                     pixels=[(3, 4)], text="1.11 meters")
    assert res.source == SOURCE_MODEL and res.answer == "1.11 meters" and res.intent == ""
    assert res.pixels.pixels.tolist() == [[3, 4]] and len(pipe.asked) == 1
    assert res.pixels.depths[0] == pytest.approx(
        measured_answer(_depth(7), INTR, "", [(3, 4)]).pixels.depths[0])


@pytest.mark.parametrize("kwargs, reason", [
    ({"question": "How far is (u=64, v=3)?"}, "pixel (u=64, v=3), outside the 64x48 image"),
    ({"question": "How far?", "regions": [(0, 0, 0, 4)]}, "region 0 is empty"),
    ({"question": "How far?", "pixels": [(1, 2, 3, 4)]}, "shape"),
    ({"question": "How far?", "mode": "guess"}, "answer mode must be one of"),
])
def test_bad_inputs_are_errors_before_the_model_runs(kwargs, reason):
    pipe, res = _ask(**kwargs)
    assert res.status == STATUS_ERROR and reason in res.status_reason
    assert res.source == SOURCE_NONE and res.answer == "" and pipe.asked == []


def test_a_refused_question_is_an_error_result():
    class Refusing(StubPipeline):
        def answer(self, context, question, max_new_tokens=None):
            raise InputError("question is empty")

    res = answer_question(Refusing(), object(), _depth(), INTR, " ", mode="measured")
    assert res.status == STATUS_ERROR and res.status_reason == "question is empty"


def test_unexpected_model_failures_propagate():
    class Broken(StubPipeline):
        def answer(self, context, question, max_new_tokens=None):
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError):
        answer_question(Broken(), object(), _depth(), INTR, "How far?")


def test_answer_modes_are_the_config_choices():
    (spec,) = [s for s in field_specs() if s.name == "answer_mode"]
    assert spec.choices == ANSWER_MODES and spec.default == "auto" == DepthVLMConfig().answer_mode
    assert STATUS_OK == 0 and STATUS_ERROR == 2


def test_measure_cost_reports_both_sides():
    cost = measure_cost(_depth(), INTR, "Which is nearer, (u=3, v=4) or (u=40, v=30)?",
                        repeats=3, pipeline=StubPipeline(), context=object())
    assert set(cost) == {"measure_s", "model_s", "ratio", "repeats"}
    assert cost["measure_s"] > 0 and cost["model_s"] >= 0
    alone = measure_cost(_depth(), INTR, "How far?", pixels=[(1, 1)], repeats=2)
    assert math.isnan(alone["model_s"]) and math.isnan(alone["ratio"])


# ------------------------------------------------------------------------------------------
# with the tiny model: a real frame context, continued for the answer and for grounding


@pytest.fixture(scope="module")
def tiny_pipe(tiny_model_and_tokenizer):
    from depthvlm_ros.core.pipeline import DepthVLMPipeline

    model, tok = tiny_model_and_tokenizer
    return DepthVLMPipeline(model, tok, DepthVLMConfig(head_backend="torch", canonical_fx=300.0,
                                                       max_depth=10000.0))


@pytest.mark.parametrize("mode", ANSWER_MODES)
def test_answer_question_with_the_tiny_model(tiny_pipe, constant_head, mode):
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    intr = Intrinsics(120.0, 120.0, 63.5, 47.5, 128, 96)
    with constant_head(tiny_pipe.model, 2.5):
        frame = tiny_pipe.process_frame(rgb, intr)
    prefix = frame.context.cache.get_seq_length()
    q = "How far is the point at pixel (u=64, v=48) from the camera?"
    res = answer_question(tiny_pipe, frame.context, frame.depth, frame.intrinsics, q,
                          mode=mode, max_new_tokens=6)
    own = tiny_pipe.answer(frame.context, q, max_new_tokens=6).text
    assert res.ok and res.model_answer == own
    assert frame.context.cache.get_seq_length() == prefix
    if mode == "model":
        assert res.answer == own and res.source == SOURCE_MODEL and len(res.pixels) == 0
    else:
        assert res.source == SOURCE_MEASURED
        want = sample_depth(frame.depth, 64, 48)
        assert res.pixels.depths[0] == np.float32(want) and math.isfinite(want)
        assert f"{want:.2f} m from the camera" in res.answer
    named = answer_question(tiny_pipe, frame.context, frame.depth, frame.intrinsics,
                            "How far is the chair?", mode=mode, max_new_tokens=4,
                            grounding_max_new_tokens=8)
    assert named.ok and frame.context.cache.get_seq_length() == prefix
    if mode == "model":
        assert named.grounding_answer == "" and named.source == SOURCE_MODEL
    else:
        # A random model writes no usable JSON: the answer says so and gives no number.
        assert named.source == SOURCE_MEASURED and named.timings["grounding_s"] > 0
        assert named.located or "could not locate" in named.answer
