"""``depthvlm perf --quick`` on a tiny model: the report's structure and sanity, not its timings.

Timed thresholds would be flaky on a shared machine, so these tests check that every figure is
there, that ratios are positive and finite, that repeat counts are recorded, and that the
prefix-reuse answer is token for token the full-prefill answer. The command runs as its own
process (it pins torch's thread count, which must not leak into the other tests).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from depthvlm_ros.core import perf

REPO = Path(__file__).resolve().parent.parent


def _run_perf(model_dir: Path, out: Path, only: str, timeout: float = 120.0) -> dict:
    env = dict(os.environ)
    # Import this checkout (not an older copy in install/), as `python -m pytest` from the root does.
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(
        [sys.executable, "-m", "depthvlm_ros.cli", "perf", "--quick", "--model", str(model_dir),
         "--out", str(out), "--only", only, "--repeats", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "perf.md").is_file()
    return json.loads((out / "perf.json").read_text())


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_report(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    return _run_perf(tiny_model_dir, out, "dense,prefix,answers,cameras,decode,head,pointcloud"), out


def test_report_header(quick_report):
    report, out = quick_report
    assert report["schema"] == "depthvlm-perf/1"
    assert report["quick"] is True and report["repeats"] == 2 and report["threads"] == 1
    assert len(report["models"]) == 2  # the random perf model and --model
    for info in report["models"].values():
        assert info["parameters"] > 0 and info["canonical_fx"] > 0
    md = (out / "perf.md").read_text()
    assert "| figure |" in md and "re-prefill" in md


def test_dense_vs_points(quick_report):
    report, _ = quick_report
    figs = report["figures"]["dense_vs_points"]
    assert set(figs) == set(report["models"])
    for r in figs.values():
        assert r["status"] == "ok", r
        assert r["points"] > 0
        assert r["point_query"]["n"] == r["points"] and r["dense"]["n"] >= 1
        for key in ("ratio_points_vs_dense", "ratio_point_vs_dense", "ratio_projected_all_pixels",
                    "projected_points_h", "points_total_s"):
            assert _positive(r[key]), (key, r[key])
        assert r["projected_pixels"] == 256 * 192
        # Every point query decodes at most the numeric-answer budget.
        assert 0 < r["mean_answer_tokens"] <= r["decode_budget_tokens"]


def test_prefix_reuse_matches_full_prefill(quick_report):
    report, _ = quick_report
    figs = report["figures"]["prefix_reuse"]
    assert set(figs) == set(report["models"])
    for r in figs.values():
        assert r["status"] == "ok", r
        assert r["question_tokens"] == perf.QUESTION_TOKENS
        assert r["first_token_reuse"]["n"] == r["first_token_full"]["n"] == 2
        for key in ("ratio_first_token", "ratio_answer"):
            assert _positive(r[key]), (key, r[key])
        assert r["answers_equal"] and r["answer_reuse_ids"] == r["answer_full_ids"]
        assert r["answer_tokens"] == len(r["answer_reuse_ids"]) > 0
        assert math.isfinite(r["max_abs_first_logit_diff"])


def test_camera_batch_gives_the_same_depth(quick_report):
    report, out = quick_report
    figs = report["figures"]["camera_batch"]
    assert set(figs) == set(report["models"])
    for r in figs.values():
        assert r["status"] == "ok", r
        assert r["cameras"] == 3 and r["sequential"]["n"] == r["batched"]["n"] == r["repeats"]
        assert _positive(r["ratio_sequential_vs_batched"])
        assert r["max_relative_depth_difference"] < 1e-4
    assert "one batched pass" in (out / "perf.md").read_text()


def test_measured_answers_cost(quick_report):
    report, out = quick_report
    figs = report["figures"]["measured_answers"]
    assert set(figs) == set(report["models"])
    for r in figs.values():
        assert r["status"] == "ok", r
        assert [q["question"] for q in r["rows"]] == ["one pixel", "two pixels", "region",
                                                      "whole image"]
        for q in r["rows"]:
            assert q["model"]["n"] == q["measure"]["n"] == 2
            assert _positive(q["ratio_measure_vs_model"])
    assert "measured answer (region) / model answer" in (out / "perf.md").read_text()


def test_jpeg_decode(quick_report):
    report, out = quick_report
    (r,) = report["figures"]["jpeg_decode"].values()
    assert r["status"] == "ok", r
    assert [(z["width"], z["height"]) for z in r["sizes"]] == [(640, 480), (1920, 1080)]
    for z in r["sizes"]:
        assert z["pillow"]["n"] >= 3 and z["bytes"] > 0
        if z["simplejpeg"] is not None:
            assert z["identical"] and _positive(z["ratio"])
    assert "JPEG decode 1920x1080" in (out / "perf.md").read_text()


def test_head_backends(quick_report):
    report, _ = quick_report
    (r,) = report["figures"]["head_backends"].values()
    assert r["status"] == "ok", r
    backends = {row["backend"]: row for row in r["rows"]}
    assert backends["torch"]["status"] == "ok" and backends["torch"]["repeats"] == 2
    if backends.get("onnxruntime", {}).get("status") == "ok":
        assert _positive(r["ratio_torch_vs_onnxruntime"])
        assert backends["onnxruntime"]["max_abs_diff_vs_torch"] < 1e-3


def test_point_cloud(quick_report):
    report, _ = quick_report
    (r,) = report["figures"]["pointcloud"].values()
    if r["status"].startswith("skipped"):
        pytest.skip(r["status"])
    assert r["status"] == "ok", r
    assert r["points"] == r["image"][0] * r["image"][1]
    assert _positive(r["ratio_cloud_vs_model"]) and _positive(r["ratio_cloud_xyz_vs_model"])


def test_question_has_exact_token_count(tiny_model_and_tokenizer):
    from depthvlm_ros.core.config import DepthVLMConfig
    from depthvlm_ros.core.pipeline import DepthVLMPipeline

    model, tok = tiny_model_and_tokenizer
    pipe = DepthVLMPipeline(model, tok, DepthVLMConfig(device="cpu", head_backend="torch"))
    for n in (8, 16):
        q = perf.question_with_tokens(pipe, n)
        assert len(pipe.question_ids(q)) - len(pipe._suffix_tail) == n


def test_only_rejects_unknown_names(tiny_model_dir, tmp_path):
    from depthvlm_ros.cli import main

    assert main(["perf", "--quick", "--model", str(tiny_model_dir), "--out", str(tmp_path),
                 "--only", "dense,warp"]) == 1


def test_command_help_names_match_core():
    """The command spells the benchmark and variant names itself (its help imports no torch)."""
    from depthvlm_ros.commands import perf as command

    assert command._BENCHMARKS == perf.BENCHMARKS
    assert command._ARCH_VARIANTS == perf.VARIANTS


def _install_missing() -> str | None:
    if not (REPO / "install" / "depthvlm_ros").is_dir():
        return "ROS install space install/depthvlm_ros is missing: run scripts/build_ros.sh"
    from depthvlm_ros.ros.perf_node import node_unavailable_reason

    return node_unavailable_reason()


@pytest.mark.skipif(_install_missing() is not None, reason=str(_install_missing()))
def test_node_overhead(tiny_model_dir, tmp_path):
    report = _run_perf(tiny_model_dir, tmp_path, "node")
    figs = report["figures"]["node_overhead"]
    assert set(figs) == set(report["models"])
    for r in figs.values():
        assert r["status"] == "ok", r
        assert r["frames"] == 2 and r["in_to_out"]["n"] == 2 and r["node_model"]["n"] == 2
        assert _positive(r["in_to_out"]["median_ms"]) and _positive(r["node_model"]["median_ms"])
        # In -> out includes the model, so it cannot be much faster than the model alone.
        assert _positive(r["ratio_in_to_out_vs_model"])
        assert math.isfinite(r["ratio_overhead_vs_model"])
        assert r["message_costs"]["image_bytes"] > r["image"][0] * r["image"][1] * 3
