"""The benchmark on our synthetic files: QA lines do not re-score their images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from depthvlm_ros.cli import main
from depthvlm_ros.core.bench.jsonl import load_gt_depth, read_jsonl
from depthvlm_ros.core.bench.synthetic import write_benchmark


def test_each_synthetic_image_is_scored_once_and_perfect_predictions_score_one(tmp_path):
    data = tmp_path / "syn"
    write_benchmark(data, 2, 2, seed=5, width=96, height=72, qa_per_image=3, progress=False)
    preds = tmp_path / "preds"
    preds.mkdir()
    for kind in ("indoor", "outdoor"):
        for rec in read_jsonl(data / f"synthetic_{kind}.jsonl"):
            gt = load_gt_depth(rec)
            np.save(preds / f"{Path(rec.image).stem}.npy", np.where(gt > 0, gt, 1.0).astype(np.float32))
    out = tmp_path / "bench"
    rc = main(["bench", "--data", str(data / "synthetic_indoor.jsonl"),
               "--data", str(data / "synthetic_outdoor.jsonl"), "--predictions", str(preds),
               "--protocol", "dense", "--out", str(out), "--depthlm-points", "0"])
    assert rc == 0
    dense = json.loads((out / "results.json").read_text())["results"]["dense"]
    results = next(v for k, v in dense.items()
                   if k not in ("const_median", "depthlm", "model@points"))["datasets"]
    for name in ("synthetic_indoor", "synthetic_outdoor"):
        assert results[name]["n_images"] == 2, results[name]
        # Not exactly 1: the protocol resizes the prediction bilinearly and the GT by nearest
        # neighbour to the canonical size, which blurs depth edges of even a perfect map.
        assert results[name]["delta1"] > 0.99
