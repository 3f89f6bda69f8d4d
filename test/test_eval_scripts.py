"""The README's measuring scripts: the training evaluation on any split, the position prior."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from depthvlm_ros.core.bench.jsonl import load_gt_depth, read_jsonl
from depthvlm_ros.core.bench.synthetic import write_benchmark

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("split")
    # The robot camera's own size: the prior's 4-pixel cells are then 4 image pixels.
    write_benchmark(out, 2, 2, seed=3, progress=False, workers=1,
                    world="robot")
    return out


def test_training_eval_scores_a_saved_model_per_group(tiny_model_dir, small_split, tmp_path,
                                                      capsys):
    result_path = tmp_path / "eval.json"
    rc = _script("training_eval").main(
        ["--model", str(tiny_model_dir), "--data", str(small_split / "synthetic.jsonl"),
         "--images", "4", "--markers", "1", "--threads", "1", "--out", str(result_path)])
    assert rc == 0
    result = json.loads(result_path.read_text())
    assert {g: d["n_images"] for g, d in result["depth"].items()} == {
        "synthetic_indoor": 2, "synthetic_outdoor": 2}
    for d in result["depth"].values():
        assert 0.0 <= d["delta1"] <= 1.0 and d["abs_rel"] >= 0.0
    assert result["answers"]["marker"]["all"]["n"] == 4
    printed = capsys.readouterr().out
    assert "synthetic_indoor: δ1" in printed and "marker:" in printed


def test_training_eval_reports_a_missing_model_folder(small_split, tmp_path, capsys):
    rc = _script("training_eval").main(
        ["--model", str(tmp_path / "no-such-model"), "--data",
         str(small_split / "synthetic.jsonl")])
    assert rc == 1
    assert "training_eval:" in capsys.readouterr().err


def test_position_prior_of_one_image_reproduces_its_depth(small_split, tmp_path):
    """Built from one image and asked for that image, the prior is its depth up to the table's
    4-pixel cells: a table read at a shifted principal point would miss the edges and floor."""
    lines = [json.loads(x) for x in
             (small_split / "synthetic_indoor.jsonl").read_text().splitlines()]
    lines = [x for x in lines if x["image"] == lines[0]["image"]]
    # Image paths are relative to the JSONL's folder, so the one-image split sits beside it.
    one = small_split / "one_image.jsonl"
    one.write_text("".join(json.dumps(x) + "\n" for x in lines))
    first = read_jsonl(one)
    rc = _script("position_prior").main(["--train", str(one), "--data", str(one),
                                         "--out", str(tmp_path / "prior")])
    assert rc == 0
    pred = np.load(tmp_path / "prior" / first[0].dataset / f"{first[0].stem}.npy")
    gt = load_gt_depth(first[0])
    assert pred.shape == gt.shape and np.isfinite(pred).all()
    ok = gt > 0
    ratio = np.maximum(pred[ok] / gt[ok], gt[ok] / pred[ok])
    assert (ratio < 1.25).mean() > 0.9
    # Read with the principal point moved by a quarter of the image, the table is wrong.
    shifted = small_split / "one_image_shifted.jsonl"
    moved = [{**x, "cx": float(x["cx"]) + 24} for x in lines]
    shifted.write_text("".join(json.dumps(m) + "\n" for m in moved))
    rc = _script("position_prior").main(["--train", str(one), "--data", str(shifted),
                                         "--out", str(tmp_path / "prior_shifted")])
    assert rc == 0
    bad = np.load(tmp_path / "prior_shifted" / first[0].dataset / f"{first[0].stem}.npy")
    bad_ratio = np.maximum(bad[ok] / gt[ok], gt[ok] / bad[ok])
    assert (bad_ratio < 1.25).mean() < (ratio < 1.25).mean()


def test_average_models_writes_the_mean_of_the_weights(tmp_path, capsys):
    from safetensors.torch import load_file

    from depthvlm_ros.core.folders import make_tiny_model, write_model_folder
    from depthvlm_ros.core.model import load_depthvlm

    folders = []
    for seed in (1, 2):
        model, tok = make_tiny_model(seed=seed)
        folders.append(write_model_folder(model, tok, tmp_path / f"m{seed}",
                                          meta={"steps": seed, "metrics": {"delta1_min": 0.5}}))
    out = tmp_path / "mean"
    assert _script("average_models").main(["--out", str(out)] + [str(f) for f in folders]) == 0
    a, b = (load_file(str(f / "model.safetensors")) for f in folders)
    mean = load_file(str(out / "model.safetensors"))
    assert mean.keys() == a.keys()
    for key in a:
        assert np.allclose(mean[key].numpy(), (a[key].numpy() + b[key].numpy()) / 2, atol=1e-7)
    assert any(not np.allclose(a[k].numpy(), b[k].numpy()) for k in a)  # the seeds differ
    meta = json.loads((out / "depthvlm_meta.json").read_text())
    assert meta["averaged_from"] == [str(f) for f in folders] and meta["steps"] == 1
    assert "metrics" not in meta  # the first folder's figures are not the average's
    load_depthvlm(out)  # a folder the node loads like any other

    # Another architecture is refused with one line, and nothing is written.
    other, tok = make_tiny_model(seed=3, text_hidden=32)
    write_model_folder(other, tok, tmp_path / "other")
    capsys.readouterr()
    assert _script("average_models").main(
        ["--out", str(tmp_path / "bad"), str(folders[0]), str(tmp_path / "other")]) == 1
    assert "another config" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_shape_errors_splits_the_bad_pixels_and_draws_them(tiny_model_dir, small_split,
                                                           tmp_path, capsys):
    shape_errors = _script("shape_errors")
    # A step in depth between columns 14 and 15: the band is the step grown by 2 pixels.
    gt = np.full((20, 30), 2.0)
    gt[:, 15:] = 4.0
    band = shape_errors.edge_band(gt, 0.05, 2)
    assert np.array_equal(np.flatnonzero(band[7]), np.arange(12, 18)) and band.all(0).sum() == 6
    # Right shape at twice the scale: nothing bad; one quadrant 2x too deep: that quadrant.
    bad, valid, scale = shape_errors.bad_pixels(2 * gt, gt)
    assert scale == pytest.approx(2.0) and not bad.any() and valid.all()
    pred = gt.copy()
    pred[:10, :10] *= 2
    bad, _, _ = shape_errors.bad_pixels(pred, gt)
    assert bad.sum() == 100 and bad[:10, :10].all()

    out, js = tmp_path / "errors.png", tmp_path / "errors.json"
    rc = shape_errors.main(["--model", str(tiny_model_dir), "--data",
                            str(small_split / "synthetic.jsonl"), "--images", "4",
                            "--frames", "2", "--out", str(out), "--json", str(js)])
    assert rc == 0 and out.stat().st_size > 0
    result = json.loads(js.read_text())
    counts, summary = result["counts"], result["summary"]
    assert summary["images"] == 4
    assert summary["bad"] == pytest.approx(counts["bad"] / counts["valid"])
    assert sum(counts[f"{b}_bad"] for b in ("top", "middle", "bottom")) == counts["bad"]
    assert sum(counts[f"{b}_valid"] for b in ("top", "middle", "bottom")) == counts["valid"]
    assert counts["edge_bad"] <= min(counts["edge"], counts["bad"])
    assert "pixels bad after scale alignment" in capsys.readouterr().out
