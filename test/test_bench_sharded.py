"""``depthvlm bench`` under ``torchrun``: records split over processes, one identical report.

Two Gloo processes on CPU against one process, on the same synthetic sets and the embedded
model (so the model rows, the constant and DepthLM-style baselines and the spatial QA all run):
the same per-dataset metrics (to float precision) and counts.
"""

from __future__ import annotations

import json
import math
import os
import sys

from torchrun_support import run_process_tree, torchrun

from depthvlm_ros.core.bench.synthetic import write_benchmark


def _bench(cmd_prefix, data, out, timeout=300):
    args = ["depthvlm_ros.cli", "bench", "--model", "embedded", "--device", "cpu",
            "--depthlm-points", "2", "--out", str(out), "--no-progress"]
    for d in data:
        args += ["--data", str(d)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = run_process_tree(cmd_prefix + args, env, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), res


def _close(a, b, path=""):
    """Equal structures, floats to a relative 1e-9 (sums over images in another grouping)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _close(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_two_processes_give_the_single_process_results(tmp_path):
    write_benchmark(tmp_path / "data", 3, 2, seed=11, progress=False, workers=1)
    data = [tmp_path / "data" / "synthetic_indoor.jsonl",
            tmp_path / "data" / "synthetic_outdoor.jsonl"]
    one, _ = _bench([sys.executable, "-m"], data, tmp_path / "one")
    two, res = _bench(torchrun(2), data, tmp_path / "two")
    assert two["metadata"]["processes"] == 2 and one["metadata"]["processes"] == 1
    # Every row of every protocol, every dataset: metrics, counts, depth bins.
    _close(one["results"], two["results"])
    _close(one["depth_bins"], two["depth_bins"])
    for key in ("datasets", "skipped", "depthlm_parse_failures"):
        _close(one["metadata"][key], two["metadata"][key])
    t1, t2 = one["metadata"]["timings"], two["metadata"]["timings"]
    assert t1["model_per_image"]["n"] == t2["model_per_image"]["n"] == 5
    assert t1["depthlm_per_point"]["n"] == t2["depthlm_per_point"]["n"]
    # Spatial QA: the same items, the same verdicts.
    qa1, qa2 = one["spatial_qa"], two["spatial_qa"]
    # 4 depth-map questions and the scene-kind question per image, and its named objects.
    n_objects = sum('"object_distance"' in line for f in data for line in f.read_text().splitlines())
    assert qa1["n_items"] == qa2["n_items"] == 5 * 5 + n_objects
    _close(qa1["datasets"], qa2["datasets"])
    # One report, written once; each rank showed its own progress only with bars on.
    assert (tmp_path / "two" / "report.md").is_file()
    assert res.stdout.count("results:") == 1
