"""Spatial QA in ``depthvlm bench``: the model's text and the measured answer, scored alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from depthvlm_ros.cli import main as cli_main
from depthvlm_ros.core.answers import measured_answer
from depthvlm_ros.core.bench.datasets import spec_for_jsonl
from depthvlm_ros.core.bench.jsonl import load_gt_depth, read_jsonl
from depthvlm_ros.core.bench.spatial_qa import QAOutcome, run_spatial_qa, score_text
from depthvlm_ros.core.bench.synthetic import write_benchmark
from depthvlm_ros.core.errors import AnnotationError


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("qa")
    # Depth-map questions only (test_scene_questions.py covers the scene-kind and object ones).
    write_benchmark(out, 2, 2, seed=5, progress=False, workers=1, scene_qa=False)
    return out


def test_score_text():
    assert score_text("point_depth", 4.0, "It is 4.9 meters away.")
    assert not score_text("point_depth", 4.0, "It is 5.1 m away.")
    assert not score_text("point_depth", 4.0, "far away")
    assert score_text("distance_3d", 1.0, "The two points are 0.80 m apart.")
    assert score_text("nearer", "A", "Point A at pixel (3, 4) is nearer")
    assert not score_text("nearer", "A", "B. Point A is 4.28 meters")
    assert not score_text("nearer", "B", "1111")
    with pytest.raises(AnnotationError):
        score_text("nearer", 3.0, "A")
    with pytest.raises(AnnotationError):
        score_text("colour", 1.0, "red")


def test_measured_answers_on_ground_truth_are_all_right(synthetic_set):
    """With the true depth map, every measured answer is right and the constant model text
    mostly is not: the scorer reads the answers the wording composes."""
    spec = spec_for_jsonl(synthetic_set / "synthetic.jsonl")
    gt = {}
    for rec in read_jsonl(spec.jsonl):
        d = load_gt_depth(rec).astype(np.float32)
        d[d <= 0] = np.nan
        gt[rec.prompt] = d

    def oracle(rgb, intrinsics, questions):
        return [QAOutcome("1.11 meters", measured_answer(gt[q], intrinsics, q).text)
                for q in questions]

    qa = run_spatial_qa([spec], oracle, progress=False)
    assert qa["n_items"] == 16  # 4 images x 4 questions
    (d,) = qa["datasets"].values()
    assert d["overall"]["measured"] == 1.0
    assert d["overall"]["model"] < 0.5
    assert d["pointing"] == {"n": 0, "hit_rate": None}
    assert set(d["by_type"]) <= {"point_depth", "region_mean", "region_median", "distance_3d",
                                 "nearer"}


def test_bench_cli_reports_spatial_qa(synthetic_set, tmp_path):
    out = tmp_path / "bench"
    assert cli_main(["bench", "--data", str(synthetic_set / "synthetic_indoor.jsonl"),
                     "--model", "embedded", "--device", "cpu", "--depthlm-points", "0",
                     "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    qa = res["spatial_qa"]
    assert qa["n_items"] == 8
    (d,) = qa["datasets"].values()
    for source in ("model", "measured"):
        assert 0.0 <= d["overall"][source] <= 1.0
    assert qa["examples"] and all(e["measured"] for e in qa["examples"])
    md = (out / "report.md").read_text()
    assert "spatial QA" in md and "| synthetic_indoor | measured |" in md
