"""Benchmark runner, baselines, results.json and reports, end to end on tiny fixtures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from depthvlm_ros.cli import main as cli_main
from depthvlm_ros.core.bench.metrics import resize_nearest
from depthvlm_ros.core.bench.report import write_report
from depthvlm_ros.core.frames import record_intrinsics
from depthvlm_ros.core.bench.datasets import DatasetSpec, load_dataset_config, spec_for_jsonl
from depthvlm_ros.core.bench.runner import run_benchmark
from depthvlm_ros.core.bench.jsonl import read_jsonl
from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.errors import AnnotationError, ConfigError


def _ramp(w, h):
    yy, xx = np.mgrid[0:h, 0:w]
    return (1.0 + 3.0 * xx / w + yy / h).astype(np.float32)  # 1..5 m, smooth


def make_set(root, name, sizes, scales, extra=None):
    """Images with a smooth GT ramp, annotations, and predictions = GT * scale per image.

    Returns the JSONL path and the predictions folder.
    """
    ds = root / name
    (ds / "rgb").mkdir(parents=True)
    (ds / "depth").mkdir()
    preds = root / f"preds_{name}"
    preds.mkdir()
    lines = []
    for i, ((w, h), s) in enumerate(zip(sizes, scales)):
        rgb = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(ds / "rgb" / f"{name}_{i}.png")
        gt = _ramp(w, h)
        Image.fromarray(np.round(gt * 1000).astype(np.uint16)).save(ds / "depth" / f"{name}_{i}.png")
        # Saved at canonical_size (2x), where the reference's model predicts: the grids then
        # coincide and the expected metrics are exact.
        np.save(preds / f"{name}_{i}.npy", resize_nearest(gt, (2 * w, 2 * h)) * s)
        pts = [[1, 1], [w - 2, h - 2], [w // 2, h // 2]]
        rec = {"image": f"rgb/{name}_{i}.png", "depth_path": f"depth/{name}_{i}.png",
               "depth_scale": 1000.0, "original_rgb_size": [w, h], "original_fx": 500.0,
               "canonical_fx": 1000.0, "canonical_size": [w * 2, h * 2], "prompt": "p",
               "solution": "s", "pixel_coords": pts,
               "depth": [float(gt[y, x]) for x, y in pts], "depth_type": "z_depth"}
        rec.update(extra or {})
        lines.append(json.dumps(rec))
    f = ds / f"{name}_test.jsonl"
    f.write_text("\n".join(lines) + "\n")
    return f, preds


def test_predictions_dir_per_image_average_and_baselines(tmp_path):
    # Image 0: pred = 1.1 GT (all within 1.25); image 1 (4x the pixels): 1.5 GT (all outside).
    f, preds = make_set(tmp_path, "nyuv2", [(8, 6), (16, 12)], [1.1, 1.5])
    res = run_benchmark([spec_for_jsonl(f)], predictions=preds, progress=False,
                        protocols=("auto", "sparse", "dense")).results
    for proto in ("auto", "sparse", "dense"):
        rows = res["results"][proto]
        model = rows[res["metadata"]["model"]]
        d = model["datasets"]["nyuv2"]
        assert d["delta1"] == pytest.approx(0.5)  # per image; pooled pixels would give 0.2
        assert d["delta2"] == pytest.approx(1.0)
        assert d["n_images"] == 2
        assert model["indoor"]["delta1"] == pytest.approx(0.5)
        assert model["outdoor"] is None
        assert model["overall"]["delta1"] == pytest.approx(0.5)
        assert "const_median" in rows
    assert res["results"]["sparse"][res["metadata"]["model"]]["datasets"]["nyuv2"]["n_points"] == 6
    # Every record has points: the authors' rule scores them all sparse.
    auto = res["results"]["auto"][res["metadata"]["model"]]["datasets"]["nyuv2"]
    assert auto["n_points"] == 6 and auto["scored_as"] == {"sparse": 2, "dense": 0}
    # Dense GT is nearest-upsampled to canonical_size (2x): 4 * (48 + 192) pixels.
    assert res["results"]["dense"][res["metadata"]["model"]]["datasets"]["nyuv2"]["n_points"] == 960
    meta = res["metadata"]["datasets"]["nyuv2"]
    assert meta["domain"] == "indoor" and meta["max_depth"] == 10.0
    assert meta["constant_source"] == "median of pooled test GT" and 1.0 < meta["constant_m"] < 5.0


def test_gt_cap_makes_far_pixels_invalid(tmp_path):
    # sunrgbd caps GT at 8 m: scaling GT so everything is > 8 m leaves no valid pixel -> 0.
    f, preds = make_set(tmp_path, "sunrgbd", [(8, 6)], [1.0])
    spec = spec_for_jsonl(f)
    assert spec.max_depth == 8.0
    capped = DatasetSpec("sunrgbd", f, "indoor", 0.005, 1.5)  # ramp is 1..5 m
    res = run_benchmark([capped], predictions=preds, protocols=("dense",), progress=False).results
    d = res["results"]["dense"][res["metadata"]["model"]]["datasets"]["sunrgbd"]
    full = run_benchmark([spec], predictions=preds, protocols=("dense",), progress=False).results
    n_full = full["results"]["dense"][full["metadata"]["model"]]["datasets"]["sunrgbd"]["n_points"]
    assert 0 < d["n_points"] < n_full
    assert d["delta1"] == pytest.approx(1.0)


def test_depth_fn_gets_intrinsics_and_point_baseline_reports_cost(tmp_path):
    f, _ = make_set(tmp_path, "synthetic_indoor", [(16, 12), (16, 12)], [1.0, 1.0],
                    extra={"fy": 510.0, "cx": 7.0, "cy": 5.5, "dataset": "synthetic_indoor",
                           "qa_type": "dense"})
    seen = []

    def depth_fn(rgb, intr):
        seen.append(intr)
        assert rgb.dtype == np.uint8 and rgb.shape == (12, 16, 3)
        return _ramp(16, 12) * 1.05

    answers = iter(["about 3 meters", "garbage"] * 10)
    marked = []

    def point_fn(rgb, intr, uv):
        marked.append((rgb.copy(), uv))
        return next(answers)

    result = run_benchmark([spec_for_jsonl(f)], depth_fn=depth_fn, point_fn=point_fn,
                           depthlm_points=2, protocols=("sparse",), model_name="m",
                           progress=False)
    res = result.results
    assert seen[0] == Intrinsics(500.0, 510.0, 7.0, 5.5, 16, 12)
    assert len(marked) == 4  # 2 images x 2 points
    img, (u, v) = marked[0]
    assert (u, v) == (1, 1)
    assert (img[..., 0] == 255).any()  # a marker was drawn
    rows = res["results"]["sparse"]
    assert set(rows) == {"m", "const_median", "depthlm", "model@points"}
    assert rows["model@points"]["datasets"]["synthetic_indoor"]["delta1"] == pytest.approx(1.0)
    # One of the two answers per image is unusable -> counted wrong.
    assert rows["depthlm"]["datasets"]["synthetic_indoor"]["delta1"] <= 0.5
    pf = res["metadata"]["depthlm_parse_failures"]
    assert pf == {"asked": 4, "failed": 2}
    t = res["metadata"]["timings"]
    assert t["model_per_image"]["n"] == 2 and t["depthlm_per_point"]["n"] == 4
    assert t["depthlm_per_image"]["n"] == 2


def test_intrinsics_default_principal_point_and_rescale(tmp_path):
    f, _ = make_set(tmp_path, "x", [(8, 6)], [1.0])
    r = read_jsonl(f)[0]
    assert record_intrinsics(r, 8, 6) == Intrinsics(500.0, 500.0, 3.5, 2.5, 8, 6)
    # The stored image is half the annotated size: the intrinsics follow it.
    half = record_intrinsics(r, 4, 3)
    assert half.fx == pytest.approx(250.0) and half.width == 4


def test_cli_end_to_end_with_predictions(tmp_path, capsys):
    f1, p1 = make_set(tmp_path, "nyuv2", [(8, 6), (8, 6)], [1.1, 1.1])
    f2, p2 = make_set(tmp_path, "waymo", [(10, 6)], [2.0])
    preds = tmp_path / "preds"
    preds.mkdir()
    for src in list(p1.iterdir()) + list(p2.iterdir()):
        (preds / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "out"
    rc = cli_main(["bench", "--data", str(f1), "--data", str(f2), "--predictions", str(preds),
                   "--out", str(out), "--no-progress", "--name", "peer", "--protocol", "both"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    model = res["results"]["dense"]["peer"]
    assert model["datasets"]["nyuv2"]["delta1"] == pytest.approx(1.0)
    assert model["datasets"]["waymo"]["delta1"] == pytest.approx(0.0)
    assert model["indoor"]["delta1"] == pytest.approx(1.0)
    assert model["outdoor"]["delta1"] == pytest.approx(0.0)
    assert model["overall"]["delta1"] == pytest.approx(0.5)  # mean over datasets
    assert model["overall"]["n_images"] == 3
    for key in ("delta1", "delta2", "delta3", "abs_rel", "rmse", "silog", "n_images", "n_points"):
        assert key in model["datasets"]["waymo"]
    assert res["metadata"]["model"] == "peer" and res["metadata"]["protocols"] == ["sparse", "dense"]
    assert "date" in res["metadata"] and "timings" in res["metadata"]
    md = (out / "report.md").read_text()
    assert "| peer |" in md and "const_median" in md and "plots/delta1_dense.png" in md
    assert "dense protocol (whole GT map" in md and "sparse protocol (annotated points)" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    for name in ("delta1_dense.png", "delta1_sparse.png", "delta1_vs_depth_dense.png", "samples.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert "overall δ1 = 50.0%" in capsys.readouterr().out


def test_cli_config_subset_and_train_median(tmp_path):
    f, preds = make_set(tmp_path, "ibims", [(8, 6)], [1.0])
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"root: {tmp_path}\ndatasets:\n"
                   f"  ibims1: {{jsonl: ibims/ibims_test.jsonl, domain: indoor, min_depth: 0.005,"
                   f" max_depth: 25.0, train_median_m: 2.5}}\n"
                   f"  other: {{jsonl: nowhere.jsonl, domain: outdoor}}\n")
    out = tmp_path / "out"
    rc = cli_main(["bench", "--config", str(cfg), "--datasets", "ibims1", "--predictions",
                   str(preds), "--protocol", "dense", "--out", str(out), "--no-progress",
                   "--limit", "1"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["results"]) == ["dense"]
    assert res["metadata"]["datasets"]["ibims1"]["constant_m"] == 2.5
    assert res["metadata"]["datasets"]["ibims1"]["constant_source"].startswith("train_median_m")
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset_config(cfg, ["nope"])


def test_cli_errors_are_one_line(tmp_path, capsys):
    f, preds = make_set(tmp_path, "nyuv2", [(8, 6)], [1.0])
    (preds / "nyuv2_0.npy").unlink()
    rc = cli_main(["bench", "--data", str(f), "--predictions", str(preds), "--out",
                   str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "no prediction nyuv2_0.npy" in err and "Traceback" not in err
    rc = cli_main(["bench", "--data", str(f), "--out", str(tmp_path / "o")])
    assert rc == 1 and "--predictions DIR or --model" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": 1}\n')
    rc = cli_main(["bench", "--data", str(bad), "--predictions", str(preds), "--out",
                   str(tmp_path / "o")])
    assert rc == 1 and "bad.jsonl:1" in capsys.readouterr().err


def test_run_benchmark_argument_checks(tmp_path):
    from depthvlm_ros.core.errors import InputError

    f, preds = make_set(tmp_path, "nyuv2", [(8, 6)], [1.0])
    spec = spec_for_jsonl(f)
    with pytest.raises(ConfigError, match="exactly one"):
        run_benchmark([spec], progress=False)
    with pytest.raises(ConfigError, match="protocols"):
        run_benchmark([spec], predictions=preds, protocols=("both",), progress=False)
    with pytest.raises(ConfigError, match="sparse_sampling"):
        run_benchmark([spec], predictions=preds, sparse_sampling="nearest", progress=False)
    with pytest.raises(ConfigError, match="unique"):
        run_benchmark([spec, spec], predictions=preds, progress=False)
    with pytest.raises(InputError, match="expected \\(H, W\\)"):
        run_benchmark([spec], depth_fn=lambda rgb, intr: np.zeros((2, 3, 4)), progress=False)


def test_write_report_results_json_is_strict(tmp_path):
    f, preds = make_set(tmp_path, "nyuv2", [(8, 6)], [1.0])
    result = run_benchmark([spec_for_jsonl(f)], predictions=preds, progress=False,
                           constant_baseline=False, protocols=("dense",))
    paths = write_report(result, tmp_path / "r")
    text = paths["results"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    res = json.loads(text)
    m = res["results"]["dense"][res["metadata"]["model"]]["datasets"]["nyuv2"]
    # pred = the float ramp, GT = the same ramp stored in whole millimetres
    assert m["silog"] < 0.05 and m["rmse"] < 1e-3 and not math.isnan(m["abs_rel"])
    assert "const_median" not in res["results"]["dense"]


def test_config_default_selection_is_the_real_sets_and_groups_skip_extra_sets(tmp_path, capsys):
    # The synthetic sets of the config are missing on disk: without --datasets they must not be
    # loaded (the run would abort), and when named they must stay out of the group means.
    f_in, p_in = make_set(tmp_path, "ibims", [(8, 6)], [1.1])  # right everywhere
    f_out, p_out = make_set(tmp_path, "waymo", [(8, 6)], [2.0])  # wrong everywhere
    preds = tmp_path / "preds"
    preds.mkdir()
    for src in list(p_in.iterdir()) + list(p_out.iterdir()):
        (preds / src.name).write_bytes(src.read_bytes())
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"root: {tmp_path}\ndatasets:\n"
                   f"  ibims1: {{jsonl: ibims/ibims_test.jsonl, domain: indoor}}\n"
                   f"  waymo: {{jsonl: waymo/waymo_test.jsonl, domain: outdoor}}\n"
                   f"  synthetic_indoor: {{jsonl: synthetic/synthetic_indoor.jsonl, "
                   f"domain: indoor, extra: true}}\n"
                   f"  synthetic_outdoor: {{jsonl: synthetic/synthetic_outdoor.jsonl, "
                   f"domain: outdoor, extra: true}}\n")
    assert [s.name for s in load_dataset_config(cfg)] == ["ibims1", "waymo"]
    out = tmp_path / "out"
    rc = cli_main(["bench", "--config", str(cfg), "--predictions", str(preds), "--out", str(out),
                   "--no-progress", "--name", "m"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["metadata"]["datasets"]) == ["ibims1", "waymo"]
    model = res["results"]["auto"]["m"]
    assert model["indoor"]["delta1"] == pytest.approx(1.0)
    assert model["overall"]["delta1"] == pytest.approx(0.5)

    # Named, a synthetic set runs and is reported, but the means stay over the real sets.
    f_syn, p_syn = make_set(tmp_path / "synthetic", "synthetic_indoor", [(8, 6)], [2.0])
    (tmp_path / "synthetic" / "synthetic_indoor.jsonl").write_text(f_syn.read_text().replace(
        '"rgb/', '"synthetic_indoor/rgb/').replace('"depth/', '"synthetic_indoor/depth/'))
    for src in p_syn.iterdir():
        (preds / src.name).write_bytes(src.read_bytes())
    out2 = tmp_path / "out2"
    capsys.readouterr()
    rc = cli_main(["bench", "--config", str(cfg), "--datasets", "ibims1,waymo,synthetic_indoor",
                   "--predictions", str(preds), "--out", str(out2), "--no-progress",
                   "--name", "m"])
    assert rc == 0
    res = json.loads((out2 / "results.json").read_text())
    model = res["results"]["auto"]["m"]
    assert model["datasets"]["synthetic_indoor"]["delta1"] == pytest.approx(0.0)
    assert model["indoor"]["delta1"] == pytest.approx(1.0)  # ibims1 only
    assert model["overall"]["delta1"] == pytest.approx(0.5)
    assert model["overall"]["n_images"] == 2
    meta = res["metadata"]["datasets"]["synthetic_indoor"]
    assert meta["extra"] is True and meta["in_group_averages"] is False
    printed = capsys.readouterr().out
    assert "auto: overall δ1 = 50.0%" in printed and "auto: synthetic_indoor δ1 = 0.0%" in printed
    # A synthetic file given with --data is an extra set too.
    assert spec_for_jsonl(tmp_path / "synthetic" / "synthetic_indoor.jsonl").extra


def test_shipped_config_selects_the_nine_real_sets_by_default(tmp_path):
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "config" / "eval_datasets.yaml"
    specs = load_dataset_config(cfg)
    assert [s.name for s in specs] == ["scannetpp", "sunrgbd", "ibims1", "nyuv2", "eth3d",
                                       "argoverse2", "waymo", "ddad", "nuscenes"]
    assert not any(s.extra for s in specs)
    # The authors' ranges (utils/datasets.py DATASET_CONFIGS).
    assert {s.name: (s.min_depth, s.max_depth) for s in specs} == {
        "scannetpp": (0.001, 10.0), "sunrgbd": (0.005, 8.0), "ibims1": (0.005, 25.0),
        "nyuv2": (0.005, 10.0), "eth3d": (0.01, 50.0), "argoverse2": (0.05, 120.0),
        "waymo": (0.05, 70.0), "ddad": (0.05, 120.0), "nuscenes": (0.05, 80.0)}
    syn = load_dataset_config(cfg, ["synthetic_indoor", "synthetic_outdoor"])
    assert all(s.extra for s in syn)
    assert syn[0].jsonl.name == "synthetic_indoor.jsonl"


def test_default_protocol_is_auto_and_results_json_labels_everything(tmp_path):
    f, preds = make_set(tmp_path, "nyuv2", [(8, 6)], [1.0])
    # A second record without points is scored dense under auto.
    lines = f.read_text().splitlines()
    rec = json.loads(lines[0])
    del rec["pixel_coords"], rec["depth"]
    f.write_text("\n".join([lines[0], json.dumps(rec)]) + "\n")
    out = tmp_path / "out"
    assert cli_main(["bench", "--data", str(f), "--predictions", str(preds), "--out", str(out),
                     "--no-progress", "--name", "m", "--sparse-sampling", "raw"]) == 0
    res = json.loads((out / "results.json").read_text())
    meta = res["metadata"]
    assert meta["protocols"] == ["auto"] and list(res["results"]) == ["auto"]
    assert "authors' rule" in meta["protocol_definitions"]["auto"]
    assert meta["sparse_sampling"]["requested"] == "raw" and meta["sparse_sampling"]["used"] == "raw"
    assert meta["metric_provenance"]["authors"] == ["delta1"]
    assert set(meta["metric_provenance"]["ours"]) == {"delta2", "delta3", "abs_rel", "rmse", "silog"}
    assert res["results"]["auto"]["m"]["datasets"]["nyuv2"]["scored_as"] == {"sparse": 1, "dense": 1}
    md = (out / "report.md").read_text()
    assert "auto protocol (authors' rule" in md and "scored sparse" in md
    assert "delta1 = the authors'" in md and "sparse sampling: raw" in md
