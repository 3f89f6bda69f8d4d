"""Untrusted files: broken or unsafe model folders, annotations, bags and query files end in one
clear error line and exit 1 from the ``depthvlm`` command, never in a traceback; weights are
only read from safetensors; NaN/Inf in ground-truth depth is never scored.

The full matrix runs ``depthvlm_ros.cli.main`` in-process (an exception escaping it would fail
the test just as a traceback would); a representative subset runs the real entry point,
``python -m depthvlm_ros.cli``, as subprocesses, to prove exit code and stderr end to end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthvlm_ros.cli import main
from depthvlm_ros.core.folders import EMBEDDED_DIR

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "depthvlm_ros"


# ------------------------------------------------------------------------------------------
# broken model folders, each made from a copy of the embedded model


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder: Path, fn) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    fn(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _pickled(d: Path) -> None:
    (d / "model.safetensors").rename(d / "pytorch_model.bin")


def _pt_only(d: Path) -> None:
    (d / "model.safetensors").unlink()
    (d / "model.pt").write_bytes(b"\x80\x04\x95 a pickle that would run code")


def _truncate(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 3])


def _garbage(d: Path) -> None:
    (d / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))


def _wider(cfg) -> None:
    cfg["text_config"]["hidden_size"] *= 2


def _retype(cfg) -> None:
    cfg["model_type"] = "llama"


#: name -> (make it broken, fragment of the error line). Every defect applies to predict,
#: export, bench and replay alike (they all load a model folder).
FOLDER_DEFECTS = {
    "missing": (lambda d: shutil.rmtree(d), "does not exist"),
    "pickle_bin": (_pickled, "pickle"),
    "pickle_pt": (_pt_only, "pickle"),
    "no_config": (lambda d: (d / "config.json").unlink(), "no config.json"),
    "config_not_json": (lambda d: (d / "config.json").write_text("{model_type: qwen"),
                        "not valid JSON"),
    "config_list": (lambda d: (d / "config.json").write_text("[1, 2]"), "model_type"),
    "config_binary": (lambda d: (d / "config.json").write_bytes(b"\xff\xfe\x00\x01"),
                      "not valid JSON"),
    "wrong_model_type": (lambda d: _edit_config(d, _retype), "model_type must be 'qwen3_vl'"),
    "wrong_dims": (lambda d: _edit_config(d, _wider), "not match"),
    "truncated_weights": (_truncate, "is truncated"),
    "garbage_weights": (_garbage, "not a valid safetensors file"),
}

#: Defects only the full model load sees (export reads the head alone and needs neither).
PIPELINE_DEFECTS = {
    "tokenizer_not_json": (lambda d: (d / "tokenizer.json").write_text("{broken"), "tokenizer"),
    "tokenizer_missing": (lambda d: [(d / f).unlink() for f in ("tokenizer.json",
                                                                 "tokenizer_config.json")],
                          "tokenizer"),
    "preprocessor_not_json": (lambda d: (d / "preprocessor_config.json").write_text("[[["),
                              "preprocessor_config.json"),
    "preprocessor_wrong_patch": (lambda d: (d / "preprocessor_config.json").write_text(
        json.dumps({"patch_size": 14})), "patch_size"),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """name -> broken model folder."""
    root = tmp_path_factory.mktemp("broken_models")
    out = {}
    for name, (make, _) in {**FOLDER_DEFECTS, **PIPELINE_DEFECTS}.items():
        folder = _copy(EMBEDDED_DIR, root / name)
        make(folder)
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """An image, a valid annotation file and a valid bag for the commands to read."""
    root = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(root / "img.png")
    Image.fromarray(np.full((48, 64), 2000, np.uint16)).save(root / "depth.png")
    (root / "ok.jsonl").write_text(json.dumps({"image": "img.png", "depth_path": "depth.png",
                                               "depth_scale": 1000.0, "original_fx": 60.0}) + "\n")
    from depthvlm_ros.bags import SAMPLE_START_NS, SampleFrame, write_frames_bag
    from depthvlm_ros.core.camera import Intrinsics
    intr = Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48)
    write_frames_bag(root / "bag", [SampleFrame(np.zeros((48, 64, 3), np.uint8), intr,
                                                np.full((48, 64), 2.0, np.float32),
                                                SAMPLE_START_NS)])
    return root


def _command(cmd: str, model: str, inputs: Path, out: Path) -> list[str]:
    if cmd == "predict":
        return ["predict", str(inputs / "img.png"), "--fx", "60", "--out", str(out),
                "--model", model, "--device", "cpu", "--head-backend", "torch"]
    if cmd == "export":
        return ["export", "--model", model, "--out", str(out)]
    if cmd == "bench":
        return ["bench", "--data", str(inputs / "ok.jsonl"), "--model", model, "--device", "cpu",
                "--out", str(out), "--no-progress"]
    if cmd == "replay":
        return ["replay", str(inputs / "bag"), "--image-topic", "/camera/image_raw",
                "--camera-info-topic", "/camera/camera_info", "--model", model,
                "--device", "cpu", "--out", str(out), "--no-progress"]
    raise AssertionError(cmd)


def _error_lines(stderr: str) -> list[str]:
    # Progress bars (tqdm, carriage returns) are not messages; everything else is.
    lines = [ln for chunk in stderr.splitlines() for ln in chunk.split("\r")]
    return [ln for ln in lines if ln.strip() and "Loading weights" not in ln]


def _check_one_error(cmd: str, rc: int, stderr: str, fragment: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = _error_lines(stderr)
    assert rc == 1, (rc, stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"depthvlm {cmd}: error: "), lines[0]
    assert fragment in lines[0], (fragment, lines[0])


MATRIX = [(cmd, name) for name in FOLDER_DEFECTS for cmd in ("predict", "export", "bench", "replay")] + \
         [(cmd, name) for name in PIPELINE_DEFECTS for cmd in ("predict", "bench", "replay")]


@pytest.mark.parametrize("cmd,defect", MATRIX, ids=[f"{c}-{d}" for c, d in MATRIX])
def test_broken_model_folder_is_one_error_line(cmd, defect, broken, inputs, tmp_path, capsys):
    fragment = {**FOLDER_DEFECTS, **PIPELINE_DEFECTS}[defect][1]
    rc = main(_command(cmd, str(broken[defect]), inputs, tmp_path / "out"))
    _check_one_error(cmd, rc, capsys.readouterr().err, fragment)


def test_matrix_size():
    # The matrix above: 4 commands x 11 folder defects, plus 3
    # commands x 4 defects only the full model load sees.
    assert len(MATRIX) == 4 * len(FOLDER_DEFECTS) + 3 * len(PIPELINE_DEFECTS) == 56


# ------------------------------------------------------------------------------------------
# broken data files


def _bad_data_cases(root: Path):
    (root / "not_utf8.jsonl").write_bytes(b'{"image": "\xff"}\n')
    (root / "truncated.jsonl").write_text('{"image": "img.png", "original_fx": 6')
    (root / "no_image.jsonl").write_text(json.dumps({"image": "nope.png", "original_fx": 60,
                                                     "depth_path": "depth.png"}) + "\n")
    (root / "nan_fx.jsonl").write_text('{"image": "img.png", "original_fx": NaN, '
                                       '"depth_path": "depth.png"}\n')
    (root / "bad.mcap").write_bytes(np.random.default_rng(1).bytes(3000))
    (root / "badbag").mkdir()
    (root / "badbag" / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed\n")
    (root / "q_bad.yaml").write_text("- {stamp: nope, question: hi}\n")
    (root / "q_not_yaml.yaml").write_text("- [unclosed\n")
    (root / "q_bomb.yaml").write_text("a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n")
    bench = ["bench", "--model", "embedded", "--device", "cpu", "--no-progress", "--data"]
    replay = ["replay", "--image-topic", "/camera/image_raw", "--camera-info-topic",
              "/camera/camera_info", "--device", "cpu", "--no-progress"]
    return [
        ("bench", bench + [str(root / "missing.jsonl")], "not found"),
        ("bench", bench + [str(root / "not_utf8.jsonl")], "UTF-8"),
        ("bench", bench + [str(root / "truncated.jsonl")], "invalid JSON"),
        ("bench", bench + [str(root / "no_image.jsonl")], "image not found"),
        ("bench", bench + [str(root / "nan_fx.jsonl")], "non-finite"),
        ("replay", replay + [str(root / "missing_bag")], "not found"),
        ("replay", replay + [str(root / "bad.mcap")], "bag"),
        ("replay", replay + [str(root / "badbag")], "bag"),
        ("replay", replay + [str(root / "bag"), "--queries", str(root / "q_bad.yaml")], "q_bad"),
        ("replay", replay + [str(root / "bag"), "--queries", str(root / "q_not_yaml.yaml")],
         "q_not_yaml"),
        ("replay", replay + [str(root / "bag"), "--queries", str(root / "q_bomb.yaml")],
         "q_bomb"),
        ("predict", ["predict", str(root / "depth.png.missing"), "--fx", "60", "--out",
                     str(root / "o")], "cannot read image"),
        ("predict", ["predict", str(root / "q_bad.yaml"), "--fx", "60", "--out",
                     str(root / "o")], "cannot read image"),
    ]


def test_broken_data_files_are_one_error_line(inputs, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(inputs, root)
    cases = _bad_data_cases(root)
    for i, (cmd, argv, fragment) in enumerate(cases):
        if cmd in ("bench", "replay"):
            argv = argv + ["--out", str(tmp_path / f"out{i}")]
        rc = main(argv)
        err = capsys.readouterr().err
        try:
            _check_one_error(cmd, rc, err, fragment)
        except AssertionError as exc:
            raise AssertionError(f"case {i} {argv[:3]}: {exc}") from None
    assert len(cases) == 13


# ------------------------------------------------------------------------------------------
# the real entry point, as a user runs it


def _run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # The source tree first: prove this checkout, not a copy installed elsewhere.
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    return subprocess.run([sys.executable, "-m", "depthvlm_ros.cli", *argv], capture_output=True,
                          text=True, timeout=300, cwd=str(REPO), env=env)


def test_cli_subprocess_errors_are_one_line(broken, inputs, tmp_path):
    jobs = [
        ("predict", _command("predict", str(broken["pickle_bin"]), inputs, tmp_path / "a"),
         "pickles are refused"),
        ("predict", _command("predict", str(broken["tokenizer_missing"]), inputs,
                             tmp_path / "b"), "tokenizer"),
        ("export", _command("export", str(broken["truncated_weights"]), inputs, tmp_path / "c"),
         "is truncated"),
        ("export", _command("export", str(broken["wrong_dims"]), inputs, tmp_path / "d"),
         "not match"),
        ("bench", ["bench", "--data", str(tmp_path / "none.jsonl"), "--model", "embedded",
                   "--out", str(tmp_path / "e")], "annotation file not found"),
        ("replay", _command("replay", str(broken["pickle_pt"]), inputs, tmp_path / "f"),
         "pickles are refused"),
    ]
    # Two at a time: each start imports torch and transformers (seconds on a shared CPU).
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: _run_cli(job[1]), jobs))
    for (cmd, _, fragment), res in zip(jobs, results):
        _check_one_error(cmd, res.returncode, res.stderr, fragment)


# ------------------------------------------------------------------------------------------
# no code from files


def test_package_never_trusts_remote_code_or_unpickles():
    hits, loads = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        hits += [f"{path}:{m.start()}" for m in re.finditer(r"trust_remote_code\s*=\s*True", text)]
        # torch.load unpickles unless weights_only=True; pickle.load always does.
        for m in re.finditer(r"\b(torch\.load|pickle\.loads?|joblib\.load)\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(2):
                loads.append(f"{path}: {m.group(0)}")
        hits += [f"{path}: allow_pickle=True" for _ in re.finditer(r"allow_pickle\s*=\s*True",
                                                                   text)]
    assert not hits and not loads, hits + loads
    # The two from_pretrained calls that read user folders say so explicitly.
    for rel in ("core/model.py", "core/pipeline.py"):
        assert "trust_remote_code=False" in (PACKAGE / rel).read_text(), rel


# ------------------------------------------------------------------------------------------
# NaN / Inf in ground-truth depth


def test_nan_inf_ground_truth_is_never_scored_in_bench_loader(tmp_path):
    from depthvlm_ros.core.bench.jsonl import load_gt_depth, read_jsonl

    gt = np.full((6, 8), 3.0, np.float32)
    gt[0, :4] = np.nan
    gt[1, :4] = np.inf
    gt[2, :4] = -np.inf
    np.save(tmp_path / "d.npy", gt)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "i.png")
    (tmp_path / "a.jsonl").write_text(json.dumps({"image": "i.png", "depth_path": "d.npy",
                                                  "depth_scale": 1.0, "original_fx": 5.0}))
    loaded = load_gt_depth(read_jsonl(tmp_path / "a.jsonl")[0])
    assert np.isfinite(loaded).all()
    assert (loaded[:3, :4] == 0).all() and int((loaded > 0).sum()) == 48 - 12


def test_nan_inf_ground_truth_is_never_scored_in_replay(tmp_path):
    """+Inf GT ("too far" in REP 118) used to be scored as a 3.4e38 m pixel in replay."""
    from depthvlm_ros.core.camera import Intrinsics
    from depthvlm_ros.bags import messages as bagconv
    from depthvlm_ros.bags import (SAMPLE_START_NS, SAMPLE_TOPICS, make_typestore,
                                         open_writer)

    ts = make_typestore()
    w, h = 64, 48
    intr = Intrinsics(60.0, 60.0, 31.5, 23.5, w, h)
    gt = np.full((h, w), 2.0, np.float32)
    special = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}
    for row, value in enumerate(special.values()):
        gt[row * 4:(row + 1) * 4] = value  # 3 x 4 rows of non-finite GT
    with open_writer(tmp_path / "in", "mcap") as wr:
        c_img = wr.add_connection(SAMPLE_TOPICS["image"], "sensor_msgs/msg/Image", typestore=ts)
        c_ci = wr.add_connection(SAMPLE_TOPICS["camera_info"], "sensor_msgs/msg/CameraInfo",
                                 typestore=ts)
        c_gt = wr.add_connection(SAMPLE_TOPICS["gt_depth"], "sensor_msgs/msg/Image", typestore=ts)
        hdr = bagconv.make_header(ts, SAMPLE_START_NS, "cam")
        rgb = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
        wr.write(c_img, SAMPLE_START_NS,
                 ts.serialize_cdr(bagconv.make_image(ts, hdr, rgb, "rgb8"), "sensor_msgs/msg/Image"))
        wr.write(c_ci, SAMPLE_START_NS, ts.serialize_cdr(bagconv.make_camera_info(ts, hdr, intr),
                                                         "sensor_msgs/msg/CameraInfo"))
        wr.write(c_gt, SAMPLE_START_NS, ts.serialize_cdr(bagconv.make_depth_image(ts, hdr, gt),
                                                         "sensor_msgs/msg/Image"))
    rc = main(["replay", str(tmp_path / "in"), "--image-topic", SAMPLE_TOPICS["image"],
               "--camera-info-topic", SAMPLE_TOPICS["camera_info"], "--gt-depth-topic",
               SAMPLE_TOPICS["gt_depth"], "--model", "embedded", "--device", "cpu",
               "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 0
    r = json.loads((tmp_path / "out" / "results.json").read_text())
    assert r["frames_scored"] == 1
    agg = r["aggregate"]
    # Only the 36 finite GT rows count; all metrics finite and plausible for a 2 m scene.
    assert all(v is not None and math.isfinite(v) for k, v in agg.items()
               if k in ("abs_rel", "rmse", "silog")), agg
    assert agg["rmse"] < 100, agg
    frame = (r.get("frames") or r.get("scores") or [{}])[0]
    n_valid = (frame.get("metrics") or frame).get("n_valid")
    if n_valid is not None:
        assert n_valid <= (h - 12) * w
