"""``depthvlm replay`` under ``torchrun``: frames shared out over processes, one output.

Two Gloo processes on CPU against one process on the same sample bag (GT, scripted questions
with pixels and regions, points): the same depth in the output bag, the same per-frame scores
and aggregate, the same answers.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from torchrun_support import run_process_tree, torchrun

from depthvlm_ros.bags import SAMPLE_TOPICS, open_reader, write_sample_bag
from depthvlm_ros.bags import messages as bagconv
from depthvlm_ros.bags.typestore import make_typestore


def _replay(prefix, bag, out, queries):
    args = ["depthvlm_ros.cli", "replay", str(bag), "--image-topic", SAMPLE_TOPICS["image"],
            "--camera-info-topic", SAMPLE_TOPICS["camera_info"], "--gt-depth-topic",
            SAMPLE_TOPICS["gt_depth"], "--queries", str(queries), "--points", "--out", str(out),
            "--model", "embedded", "--device", "cpu", "--head-backend", "torch",
            "--no-progress"]
    res = run_process_tree(prefix + args, dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), res


def _depths(bag):
    ts, out = make_typestore(), {}
    reader = open_reader(bag)
    try:
        for conn, _, raw in reader.messages():
            if conn.topic == "/depth/image":
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                out[bagconv.stamp_ns(msg.header.stamp)] = bagconv.image_depth_m(msg)
    finally:
        reader.close()
    return out


def test_two_processes_replay_like_one(tmp_path):
    write_sample_bag(tmp_path / "in", frames=5, width=160, height=120)
    queries = tmp_path / "q.yaml"
    queries.write_text("- {time: 0.15, question: 'How far is the point at pixel (u=80, v=60)?'}\n"
                       "- {time: 0.35, question: 'How far is the nearest thing here?', "
                       "regions: [[20, 30, 60, 40]], id: region}\n")
    one, _ = _replay([sys.executable, "-m"], tmp_path / "in", tmp_path / "one", queries)
    two, res = _replay(torchrun(2), tmp_path / "in", tmp_path / "two", queries)
    for key in ("frames_total", "frames_processed", "frames_scored", "drops", "answers",
                "answer_errors", "messages_in", "messages_out", "aggregate"):
        assert one[key] == two[key], key
    assert one["frames_processed"] == 5 and one["answers"] == 2
    assert one["scores"] == two["scores"]  # per frame: index, stamp, every metric
    assert one["answers_log"] == two["answers_log"]
    d1, d2 = _depths(tmp_path / "one" / "bag"), _depths(tmp_path / "two" / "bag")
    assert sorted(d1) == sorted(d2) and len(d1) == 5
    for stamp in d1:
        np.testing.assert_array_equal(d1[stamp], d2[stamp])
    assert res.stdout.count("output bag:") == 1  # rank 0 alone writes and reports
