"""Training-only position readouts: their targets, their loss, and a run that trains, saves and
resumes them while every model folder stays a plain DepthVLM folder."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torchrun_support import run_process_tree

from depthvlm_ros.core.bench.jsonl import read_jsonl
from depthvlm_ros.core.folders import make_tiny_model
from depthvlm_ros.core.train.config import ARCHITECTURES
from depthvlm_ros.core.train.data import collate
from depthvlm_ros.core.train.locate import (READOUTS_FILE, LocateReadouts, locate_loss,
                                            token_centres)
from test_eval_scripts import _script
from test_train import _builder, write_plane_dataset


def _with_named_sky(path):
    """The plane dataset with each image's sky named as an object (box over the top rows)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["object_box"] = [10, 0, 99, int(row["cy"]) - 4]
        row["object_label"] = "blue sky"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_token_centres_are_fractions_of_the_image():
    c = token_centres(2, 3)
    assert c.shape == (2, 3, 2)
    assert torch.allclose(c[0, :, 0], torch.tensor([1 / 6, 3 / 6, 5 / 6]))
    assert torch.allclose(c[:, 0, 1], torch.tensor([1 / 4, 3 / 4]))


def test_reply_readout_is_taught_only_on_grounding_replies():
    torch.manual_seed(0)
    readouts = LocateReadouts(8)
    hidden = torch.randn(2, 6, 8, requires_grad=True)
    image_hidden = torch.randn(2, 2, 2, 8)
    labels = torch.full((2, 6), -100)
    labels[:, 4:] = 7                      # both samples have a two-token reply at 4..5
    target = torch.tensor([[0.25, 0.5], [float("nan"), float("nan")]])  # only sample 0 grounds
    locate_loss(readouts, hidden, image_hidden, labels, target).backward()
    grad = hidden.grad.abs().sum(-1)
    # Positions 3 and 4 predict the reply tokens 4 and 5 of the grounding sample.
    assert grad[0, 3] > 0 and grad[0, 4] > 0
    assert grad[0, :3].sum() == 0 and grad[0, 5] == 0 and grad[1].sum() == 0


def test_without_grounding_samples_the_loss_still_reaches_both_readouts():
    readouts = LocateReadouts(8)
    hidden = torch.randn(1, 4, 8)
    labels = torch.full((1, 4), -100)
    labels[0, 3] = 5
    loss = locate_loss(readouts, hidden, torch.randn(1, 2, 3, 8), labels,
                       torch.full((1, 2), float("nan")))
    assert torch.isfinite(loss)
    loss.backward()
    # Data-parallel ranks must use every parameter in every step, even at zero gradient.
    assert readouts.reply_xy.weight.grad is not None
    assert readouts.reply_xy.weight.grad.abs().sum() == 0
    assert readouts.token_xy.weight.grad.abs().sum() > 0


def test_grounding_samples_carry_the_object_centre_and_flips_mirror_it(tmp_path):
    data = _with_named_sky(write_plane_dataset(tmp_path / "d", 1, 0))
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    (record,) = read_jsonl(data)
    (row,) = [json.loads(line) for line in data.read_text().splitlines()]
    builder, _ = _builder(model, tok, hflip=0.0, jitter=0.0, crop=0.0)
    # Pixels 10..99 of 160 columns and 0..y2 of 128 rows: centre by the pixels' edges.
    x_centre = (10 + 90 / 2) / 160
    y_centre = (row["object_box"][3] + 1) / 2 / 128
    plain = builder.build(record, np.random.default_rng(0), kind="ground")
    assert plain.text.kind == "ground"
    assert plain.locate_xy == pytest.approx((x_centre, y_centre))
    flipper, _ = _builder(model, tok, hflip=1.0, jitter=0.0, crop=0.0)
    flipped = flipper.build(record, np.random.default_rng(0), kind="ground")
    assert flipped.info["flip"]
    assert flipped.locate_xy == pytest.approx((1 - x_centre, y_centre))
    other = builder.build(record, np.random.default_rng(0), kind="dense")
    assert other.locate_xy is None
    batch = collate([plain, other], tok.pad_token_id)
    assert batch["locate_xy"][0].tolist() == pytest.approx([x_centre, y_centre])
    assert torch.isnan(batch["locate_xy"][1]).all()


def test_train_with_readouts_saves_them_beside_the_model_and_resumes_exactly(tmp_path,
                                                                            capsys):
    data = _with_named_sky(write_plane_dataset(tmp_path / "d", 4, 0))
    base = [sys.executable, "-m", "depthvlm_ros.cli", "train", "--train", str(data),
            "--arch", "test", "--canonical-fx", "100", "--max-image-tokens", "64",
            "--batch-size", "2", "--workers", "0", "--threads", "1", "--ckpt-every", "3",
            "--device", "cpu", "--log-every", "1", "--text-mix", "ground=1,dense=1",
            "--locate-weight", "2", "--stages", "0:6:2e-3"]
    env = dict(os.environ, OMP_NUM_THREADS="1", DEPTHVLM_TRAIN_DUMP_PARAMS="1")
    full = tmp_path / "full"
    res = run_process_tree(base + ["--out", str(full)], env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in (full / "train_log.jsonl").read_text().splitlines()]
    losses = [r["locate_loss"] for r in rows if r["type"] == "train"]
    assert len(losses) == 6 and all(np.isfinite(losses)) and min(losses) > 0
    ck = full / "checkpoints" / "step-0000003"
    readouts = load_file(str(ck / READOUTS_FILE))
    assert set(readouts) == {"token_xy.weight", "token_xy.bias", "reply_xy.weight",
                             "reply_xy.bias"}
    # Model folders stay stock: no readout weights in them, none next to them.
    weights = load_file(str(full / "final" / "model.safetensors"))
    assert not any("readout" in k or "token_xy" in k for k in weights)
    assert not (full / "final" / READOUTS_FILE).exists()
    # The readouts' own report reads them back from the checkpoint.
    report = _script("locate_readouts_eval")
    assert report.main(["--checkpoint", str(ck), "--data", str(data)]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["objects"] == 4
    assert 0 < scores["token_mse"] < 1 and 0 <= scores["reply_inside_box"] <= 1
    assert report.main(["--checkpoint", str(full / "final"), "--data", str(data)]) == 2
    assert "no position readouts" in capsys.readouterr().err
    # Resuming from step 3 restores the readouts too: their gradients shape the model, so a
    # fresh pair would end on other weights.
    resumed = tmp_path / "resumed"
    res = run_process_tree(base + ["--out", str(resumed), "--resume", str(ck)], env)
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((full / "params_rank0.json").read_text())["params"]
    b = json.loads((resumed / "params_rank0.json").read_text())["params"]
    assert a == b
