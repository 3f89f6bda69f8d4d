"""Questions only the generator can answer: the scene's kind and named objects (pointing).

The generator names an object by the colour its pixels show and its shape, only when it is the
one such object in view; the writer asks its distance and records its box; training teaches
the grounding reply for it; the benchmark and the training evaluation score pointing as the
product does it (the grounding follow-up of a measured answer).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from depthvlm_ros.core.bench.datasets import spec_for_jsonl
from depthvlm_ros.core.bench.jsonl import load_rgb, read_jsonl
from depthvlm_ros.core.bench.jsonl import BenchRecord
from depthvlm_ros.core.bench.spatial_qa import (QAOutcome, item_truth, pointing_hit, run_spatial_qa,
                                              score_text)
from depthvlm_ros.core.bench.synthetic import (Box, Camera, Cylinder, Light, Material, Plane,
                                               camera_rotation, render, visible_objects,
                                               write_benchmark)
from depthvlm_ros.core.bench.synthetic.objects import COLOUR_NAMES, SCENE_QUESTION, colour_names
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.errors import AnnotationError
from depthvlm_ros.core.folders import make_tiny_model
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.spatial import Region, format_grounding, grounding_prompt, parse_grounding
from depthvlm_ros.core.train.data import (AugmentConfig, SampleBuilder, TextMix,
                                         named_objects_by_image)
from depthvlm_ros.core.train.evaluate import evaluate_model
from depthvlm_ros.core.train.loop import ARCHITECTURES

W, H = 160, 120


def _plain(rgb) -> Material:
    return Material(color_a=rgb, color_b=rgb)


def _camera() -> Camera:
    """At (0, 0, 1) m looking along +Y, level: a face at Y = y has z-depth y."""
    R = camera_rotation(0.0, 0.0)
    return Camera(W, H, 100.0, 100.0, (W - 1) / 2, (H - 1) / 2, (0.0, 0.0, 1.0),
                  tuple(tuple(float(x) for x in row) for row in R))


def _shot(objects):
    rgb, depth, ids = render(_camera(), objects, Light(), return_ids=True)
    return visible_objects(rgb, depth, ids, objects), ids


WALL = Plane((0, 1, 0), 6.0, _plain((0.5, 0.5, 0.5)))
RED = (0.8, 0.08, 0.06)


def test_colour_names_of_plain_colours():
    pixels = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (40, 60, 200),
              "white": (240, 240, 240), "black": (20, 20, 20), "grey": (128, 128, 128),
              "brown": (100, 50, 20), "yellow": (230, 200, 30), "purple": (150, 40, 190),
              "orange": (240, 130, 20)}
    got = colour_names(np.array(list(pixels.values()), np.uint8))
    assert [COLOUR_NAMES[i] for i in got] == list(pixels)


def test_a_lone_red_box_is_named_with_its_box_and_depth():
    box = Box((-0.4, 2.0, 0.6), (0.4, 2.5, 1.4), _plain(RED))
    (obj,), ids = _shot([WALL, box])
    assert obj.label == "red box" and obj.index == 1
    rows, cols = np.nonzero(ids == 1)
    assert obj.box == (cols.min(), rows.min(), cols.max(), rows.max())
    assert obj.depth == pytest.approx(2.0, abs=1e-3)  # its front face
    # The wall is a plane: never a named object.
    assert all(o.index != 0 for o in _shot([WALL, box])[0])


def test_two_objects_of_one_name_are_not_named_but_two_shapes_are():
    left = Box((-1.2, 2.0, 0.6), (-0.5, 2.5, 1.3), _plain(RED))
    right = Box((0.5, 2.0, 0.6), (1.2, 2.5, 1.3), _plain(RED))
    assert _shot([WALL, left, right])[0] == []
    cyl = Cylinder(0.85, 2.3, 0.3, 0.5, 1.4, _plain(RED))
    named, _ = _shot([WALL, left, cyl])
    assert sorted(o.label for o in named) == ["red box", "red cylinder"]


def test_a_small_or_patterned_object_is_not_named():
    tiny = Box((-0.05, 3.0, 0.95), (0.05, 3.1, 1.05), _plain(RED))
    assert _shot([WALL, tiny])[0] == []
    checker = Material(color_a=RED, color_b=(0.05, 0.2, 0.8), checker=1.0, scale=0.1)
    assert _shot([WALL, Box((-0.4, 2.0, 0.6), (0.4, 2.5, 1.4), checker)])[0] == []


def test_format_grounding_round_trips_and_points_at_the_centre():
    region = Region.from_corners(37, 20, 90, 71)
    text = format_grounding([("red box", region)], W, H)
    (obj,) = parse_grounding(text, W, H)
    assert obj.label == "red box" and obj.region == region
    assert obj.point == pytest.approx(((37 + 90) / 2, (20 + 71) / 2))
    (pt,) = parse_grounding('[{"point_2d": [500, 500], "label": "x"}]', W, H)
    assert pt.point == pt.pixel


def test_scene_kind_and_pointing_scores():
    assert score_text("scene_kind", "indoors", "Indoors.")
    assert score_text("scene_kind", "outdoors", "It is an outdoor scene.")
    assert not score_text("scene_kind", "indoors", "Outdoors, not indoors.")  # the first counts
    assert not score_text("scene_kind", "outdoors", "1111")
    with pytest.raises(AnnotationError):
        score_text("scene_kind", "A", "indoors")
    box = (10, 10, 20, 20)
    assert pointing_hit([(15.0, 12.0)], box) and pointing_hit([(20.4, 10.0)], box)
    assert not pointing_hit([], box)
    # Only the first located object counts, so listing many cannot score.
    assert not pointing_hit([(50.0, 50.0), (15.0, 15.0)], box)


def _record(qa_type, solution, **extra):
    return BenchRecord(image=Path("x.png"), depth_path=None, original_fx=500.0, prompt="q",
                       solution=solution, qa_type=qa_type, extra=extra)


def test_item_truth_reads_the_answer_field_or_the_solution_text():
    # Generator lines carry an answer field; hand-written ones may carry only the solution,
    # which is read with the same rules as a model's answer.
    assert item_truth(_record("scene_kind", "Indoors.", answer="indoors")) == "indoors"
    assert item_truth(_record("scene_kind", "It is an outdoor scene.")) == "outdoors"
    assert item_truth(_record("nearer", "B is nearer.")) == "B"
    assert item_truth(_record("object_distance", "2.35 meters", answer=2.35)) == 2.35
    assert item_truth(_record("point_depth", "About 4.5 meters.")) == pytest.approx(4.5)
    assert item_truth(_record("scene_kind", "Hard to say.")) is None
    assert item_truth(_record("dense_depth", "[[1.0]]")) is None


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("scene_qa")
    meta = write_benchmark(out, 4, 4, seed=11, width=W, height=H, progress=False, world="v1",
                           qa_per_image=2)
    assert meta["qa_counts"]["scene_kind"] == 8
    assert meta["qa_counts"]["object_distance"] >= 2, meta["qa_counts"]
    return out


def test_scene_questions_can_be_left_out(tmp_path):
    meta = write_benchmark(tmp_path, 1, 1, seed=11, width=W, height=H, progress=False,
                           world="v1", qa_per_image=2, scene_qa=False)
    assert meta["qa_counts"]["scene_kind"] == meta["qa_counts"]["object_distance"] == 0
    assert meta["n_lines"] == 2 * 3


def test_benchmark_scores_scene_kind_and_pointing_with_an_oracle(scene_set):
    spec = spec_for_jsonl(scene_set / "synthetic.jsonl")
    by_image = {}
    for rec in read_jsonl(spec.jsonl):
        by_image.setdefault(load_rgb(rec).tobytes(), []).append(rec)

    def oracle(rgb, intrinsics, questions):
        recs = {r.prompt: r for r in by_image[rgb.tobytes()]}
        out = []
        for q in questions:
            rec = recs[q]
            if rec.qa_type == "scene_kind":
                out.append(QAOutcome(rec.extra["answer"].capitalize() + ".", ""))
            elif rec.qa_type == "object_distance":
                x1, y1, x2, y2 = rec.extra["object_box"]
                out.append(QAOutcome(rec.solution, "", (((x1 + x2) / 2, (y1 + y2) / 2),)))
            else:
                out.append(QAOutcome(rec.solution, ""))
        return out

    qa = run_spatial_qa([spec], oracle, progress=False)
    (d,) = qa["datasets"].values()
    assert d["by_type"]["scene_kind"]["model"] == 1.0
    assert d["by_type"]["object_distance"]["model"] == 1.0
    assert d["pointing"]["n"] == d["by_type"]["object_distance"]["n"]
    assert d["pointing"]["hit_rate"] == 1.0


def _builder(model, tok, hflip, image_objects=None, mix=None):
    pipe = DepthVLMPipeline(model, tok, DepthVLMConfig(canonical_fx=100.0, device="cpu"),
                            model_canonical_fx=100.0)
    return SampleBuilder(pipe.prompt_ids, tok, tok.convert_tokens_to_ids("<|im_end|>"), 100.0,
                         64, AugmentConfig(hflip=hflip, jitter=0.0), mix or TextMix(ground=1.0),
                         image_objects=image_objects)


def test_any_record_of_an_image_with_a_named_object_can_carry_its_grounding(scene_set):
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    records = read_jsonl(scene_set / "synthetic.jsonl")
    by_image = named_objects_by_image(records)
    assert by_image and all(r.qa_type == "object_distance" for v in by_image.values() for r in v)
    image = next(iter(by_image))
    dense = next(r for r in records if r.image == image and r.qa_type == "dense_depth")
    only_ground = TextMix(dense=0, point=0, marker=0, qa=0, ground=1.0)
    with_objects = _builder(model, tok, 0.0, by_image, only_ground)
    replies = set()
    for seed in range(6):
        s = with_objects.build(dense, np.random.default_rng(seed))
        assert s.text.kind == "ground"
        named = next(r for r in by_image[image]
                     if s.text.question == grounding_prompt(r.prompt))
        (obj,) = parse_grounding(s.text.reply_text, W, H)
        assert obj.label == named.extra["object_label"]
        assert obj.region == Region.from_corners(*named.extra["object_box"])
        replies.add(s.text.reply_text)
    assert len(replies) == len(by_image[image])   # each of the image's objects is drawn
    # Without the map, a depth line cannot: its own record names nothing.
    s = _builder(model, tok, 0.0, None, only_ground).build(dense, np.random.default_rng(0))
    assert s.text.kind == "dense"
    # An image with no named object never gets a grounding target.
    bare = next(r for r in records if r.image not in by_image)
    assert with_objects.build(bare, np.random.default_rng(0)).text.kind == "dense"


def test_ground_target_is_the_objects_box_and_mirrors_with_the_image(scene_set):
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    rec = next(r for r in read_jsonl(scene_set / "synthetic.jsonl")
               if r.qa_type == "object_distance")
    x1, y1, x2, y2 = rec.extra["object_box"]
    for hflip, want in ((0.0, Region.from_corners(x1, y1, x2, y2)),
                        (1.0, Region.from_corners(W - 1 - x2, y1, W - 1 - x1, y2))):
        s = _builder(model, tok, hflip).build(rec, np.random.default_rng(0), kind="ground")
        assert s.text.kind == "ground" and s.info["flip"] == bool(hflip)
        assert s.text.question == grounding_prompt(rec.prompt)
        (obj,) = parse_grounding(s.text.reply_text, W, H)
        assert obj.label == rec.extra["object_label"]
        assert obj.region == want
    scene = next(r for r in read_jsonl(scene_set / "synthetic.jsonl")
                 if r.qa_type == "scene_kind")
    s = _builder(model, tok, 1.0).build(scene, np.random.default_rng(0), kind="qa")
    assert s.text.question == SCENE_QUESTION and s.info["flip"]
    assert s.text.reply_text == scene.extra["answer"].capitalize() + "."


def test_training_evaluation_reports_scene_kind_and_pointing(scene_set):
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    records = read_jsonl(scene_set / "synthetic.jsonl")
    res = evaluate_model(model, tok, records, canonical_fx=100.0, max_tokens=64,
                         markers_per_image=0, max_new_tokens=4)
    n_objects = sum(r.qa_type == "object_distance" for r in records)
    for kind, n in (("scene_kind", 8), ("pointing", n_objects), ("object_measured", n_objects),
                    ("object_distance", n_objects)):
        assert res["answers"][kind]["all"]["n"] == n, kind
        assert 0.0 <= res["answers"][kind]["all"]["accuracy"] <= 1.0
    for key in ("scene_kind_accuracy", "pointing_accuracy", "object_measured_accuracy"):
        assert not math.isnan(res["summary"][key])
