"""``depthvlm predict`` end to end on a tiny model folder."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from depthvlm_ros.cli import main


def test_predict_writes_depth_files_and_answer(tmp_path, tiny_model_dir, capsys):
    img = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), np.uint8)).save(img)
    out = tmp_path / "out"
    rc = main(["predict", str(img), "--fx", "150", "--cy", "40", "--question",
               "How far is the point at pixel (3, 4)?", "--out", str(out),
               "--model", str(tiny_model_dir)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "answer:" in printed
    depth = np.load(out / "scene.npy")
    assert depth.shape == (90, 120) and depth.dtype == np.float32
    mm = np.asarray(Image.open(out / "scene_mm.png"))
    assert mm.dtype == np.uint16
    valid = np.isfinite(depth)
    np.testing.assert_allclose(mm[valid] / 1000.0, depth[valid], atol=0.0006)
    assert (mm[~valid] == 0).all()
    color = np.asarray(Image.open(out / "scene_color.png"))
    assert color.shape == (90, 120, 3)
    summary = json.loads((out / "scene_summary.json").read_text())
    assert summary["question"].startswith("How far") and "answer" in summary


def test_predict_bad_inputs_exit_nonzero_with_one_line(tmp_path, tiny_model_dir, capsys):
    assert main(["predict", str(tmp_path / "missing.png"), "--fx", "100", "--out",
                 str(tmp_path), "--model", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read image" in err[0]
    bad = tmp_path / "notimage.png"
    bad.write_bytes(b"this is not a png")
    assert main(["predict", str(bad), "--fx", "100", "--out", str(tmp_path),
                 "--model", str(tiny_model_dir)]) == 1
    img = tmp_path / "ok.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    assert main(["predict", str(img), "--fx", "100", "--out", str(tmp_path),
                 "--model", str(tmp_path / "no_model")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_predict_resize_mode_option_picks_the_chain(tmp_path, tiny_model_dir):
    """--resize-mode release runs the authors' chain (fx on both axes, 28- then 32-multiple
    resizes, depth as is); metric resamples once by fx and fy and keeps depth metric."""
    img = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (96, 128, 3), np.uint8)).save(img)
    summaries = {}
    for mode in ("release", "metric"):
        out = tmp_path / mode
        assert main(["predict", str(img), "--fx", "400", "--fy", "300", "--out", str(out),
                     "--model", str(tiny_model_dir), "--resize-mode", mode]) == 0
        summaries[mode] = json.loads((out / "scene_summary.json").read_text())
    rel, met = summaries["release"], summaries["metric"]
    assert rel["resize_mode"] == "release" and met["resize_mode"] == "metric"
    assert rel["depth_scale"] == 1.0
    # Release ignores fy (one scale for both axes); metric honours it, so the canonical
    # images differ in height.
    assert rel["model_input"] != met["model_input"]
