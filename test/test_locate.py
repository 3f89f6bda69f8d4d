"""Training-only grounding signals: the position readouts' targets and loss, the selection loss
on the model's own attention, the object probes on the image tokens, and a run that trains,
saves and resumes them while every model folder stays a plain DepthVLM folder."""

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
from depthvlm_ros.core.folders import make_tiny_model, write_model_folder
from depthvlm_ros.core.train.config import ARCHITECTURES
from depthvlm_ros.core.train.data import collate
from depthvlm_ros.core.bench.synthetic.objects import COLOUR_NAMES, OBJECT_SHAPES
from depthvlm_ros.core.train.locate import (OBJECT_PROBES_FILE, READOUTS_FILE, LocateReadouts,
                                            ObjectProbes, box_attention_mass, box_tokens,
                                            capture_attention_inputs, head_attention,
                                            locate_loss, object_classes, object_loss,
                                            selection_loss, token_centres)
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
    # Only sample 0 grounds (a box centred on (0.25, 0.5)).
    target = torch.tensor([[0.2, 0.4, 0.3, 0.6], [float("nan")] * 4])
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
                       torch.full((1, 4), float("nan")))
    assert torch.isfinite(loss)
    loss.backward()
    # Data-parallel ranks must use every parameter in every step, even at zero gradient.
    assert readouts.reply_xy.weight.grad is not None
    assert readouts.reply_xy.weight.grad.abs().sum() == 0
    assert readouts.token_xy.weight.grad.abs().sum() > 0


def test_grounding_samples_carry_the_object_box_and_flips_mirror_it(tmp_path):
    data = _with_named_sky(write_plane_dataset(tmp_path / "d", 1, 0))
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    (record,) = read_jsonl(data)
    (row,) = [json.loads(line) for line in data.read_text().splitlines()]
    builder, _ = _builder(model, tok, hflip=0.0, jitter=0.0, crop=0.0)
    # Pixels 10..99 of 160 columns and 0..y2 of 128 rows, by the pixels' edges.
    box = (10 / 160, 0.0, 100 / 160, (row["object_box"][3] + 1) / 128)
    plain = builder.build(record, np.random.default_rng(0), kind="ground")
    assert plain.text.kind == "ground"
    assert plain.locate_box == pytest.approx(box)
    flipper, _ = _builder(model, tok, hflip=1.0, jitter=0.0, crop=0.0)
    flipped = flipper.build(record, np.random.default_rng(0), kind="ground")
    assert flipped.info["flip"]
    assert flipped.locate_box == pytest.approx((1 - box[2], box[1], 1 - box[0], box[3]))
    other = builder.build(record, np.random.default_rng(0), kind="dense")
    assert other.locate_box is None
    batch = collate([plain, other], tok.pad_token_id)
    assert batch["locate_box"][0].tolist() == pytest.approx(list(box))
    assert torch.isnan(batch["locate_box"][1]).all()
    # The object's name travels as class indices: "sky" is no shape the probes know.
    assert plain.locate_label == "blue sky" and other.locate_label is None
    assert batch["object_classes"].tolist() == [[COLOUR_NAMES.index("blue"), -100],
                                                [-100, -100]]


def test_object_classes_come_from_the_generators_words():
    assert object_classes("red box") == (COLOUR_NAMES.index("red"), OBJECT_SHAPES.index("box"))
    assert object_classes("grey cylinder") == (COLOUR_NAMES.index("grey"),
                                               OBJECT_SHAPES.index("cylinder"))
    # Names from other data are not guessed at.
    assert object_classes("the door") == (-100, -100)
    assert object_classes("") == (-100, -100) and object_classes(None) == (-100, -100)


def test_box_tokens_take_covered_cells_and_always_the_centre_cell():
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5],        # the top-left quarter of a 2x4 grid
                          [0.30, 0.60, 0.32, 0.62],    # smaller than a cell
                          [0.0, 0.0, 0.3, 1.0],        # covers 0.2 of column 1: left out
                          [float("nan")] * 4])
    t = box_tokens(boxes, 2, 4)
    assert t[0].tolist() == [[True, True, False, False], [False, False, False, False]]
    assert t[1].tolist() == [[False, False, False, False], [False, True, False, False]]
    assert t[2].tolist() == [[True, False, False, False], [True, False, False, False]]
    assert not t[3].any()


def _image_sequence(model, grid_h=2, grid_w=3, reply=3):
    """A prompt of 2 tokens, a grid_h x grid_w image block and a ``reply``-token answer."""
    torch.manual_seed(0)
    cfg = model.config
    patch = cfg.vision_config.patch_size
    merge = cfg.vision_config.spatial_merge_size
    thw = torch.tensor([[1, grid_h * merge, grid_w * merge]])
    pixels = torch.randn(grid_h * grid_w * merge * merge,
                         3 * cfg.vision_config.temporal_patch_size * patch * patch)
    ids = torch.tensor([[5, 6] + [cfg.image_token_id] * (grid_h * grid_w)
                        + [7, 8, 9][:reply]])
    labels = torch.full(ids.shape, -100)
    labels[0, -reply:] = ids[0, -reply:]
    return ids, labels, pixels, thw


def test_head_attention_is_the_layers_own_attention():
    model, _ = make_tiny_model(0, **ARCHITECTURES["test"])
    # Eager kernels hand back their attention weights: the reference.
    model.config.text_config._attn_implementation = "eager"
    ids, _, pixels, thw = _image_sequence(model)
    layer = model.model.language_model.layers[-1].self_attn
    seen = {}
    hook = layer.register_forward_hook(lambda _m, _a, out: seen.update(weights=out[1]))
    with torch.no_grad(), capture_attention_inputs(model, -1) as tap:
        model.encode(ids, pixels, thw)
    hook.remove()
    heads = model.config.text_config.num_attention_heads
    for head in (0, heads - 1):
        assert torch.allclose(head_attention(tap, head), seen["weights"][:, head], atol=1e-6)
    assert not layer._forward_pre_hooks      # the capture left nothing behind


def test_selection_loss_moves_the_heads_attention_onto_the_box():
    model, _ = make_tiny_model(0, **ARCHITECTURES["test"])
    ids, labels, pixels, thw = _image_sequence(model)
    box = torch.tensor([[0.7, 0.0, 1.0, 0.5]])          # the top-right token of the 2x3 grid
    image_mask = ids == model.config.image_token_id
    opt = torch.optim.Adam(model.model.language_model.parameters(), lr=1e-2)
    masses = []
    for _ in range(15):
        with capture_attention_inputs(model, -1) as tap:
            enc = model.encode(ids, pixels, thw)
        loss = selection_loss(tap, image_mask, enc.grid_hw, labels, box)
        with torch.no_grad():
            masses.append(float(box_attention_mass(head_attention(tap), image_mask,
                                                   enc.grid_hw, box)[0, -3:-1].mean()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert masses[0] < 0.3 and masses[-1] > 0.6
    # A batch with no grounding sample gives zero, still tied to the layer's weights.
    with capture_attention_inputs(model, -1) as tap:
        enc = model.encode(ids, pixels, thw)
    zero = selection_loss(tap, image_mask, enc.grid_hw, labels,
                          torch.full((1, 4), float("nan")))
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_object_loss_teaches_the_boxs_tokens_their_object_through_the_vision_tower():
    model, _ = make_tiny_model(0, **ARCHITECTURES["test"])
    ids, labels, pixels, thw = _image_sequence(model)
    image_mask = ids == model.config.image_token_id
    box = torch.tensor([[0.0, 0.0, 0.7, 0.5]])           # two tokens of the top row
    classes = torch.tensor([[COLOUR_NAMES.index("red"), OBJECT_SHAPES.index("cylinder")]])
    probes = ObjectProbes(model.config.text_config.hidden_size)
    opt = torch.optim.Adam(list(model.parameters()) + list(probes.parameters()), lr=1e-2)
    losses = []
    for step in range(15):
        with capture_attention_inputs(model, -1) as tap:
            enc = model.encode(ids, pixels, thw)
        loss = object_loss(probes, tap, image_mask, enc.grid_hw, box, classes)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            # What the probes read comes from the vision tower: its weights are taught.
            grads = [p.grad for p in model.model.visual.parameters() if p.grad is not None]
            assert grads and sum(float(g.abs().sum()) for g in grads) > 0
        opt.step()
        losses.append(float(loss.detach()))
    # Chance is log(10) + log(2) = 3.0; two tokens of one object are learnt quickly.
    assert losses[0] > 2.0 and losses[-1] < 0.5
    # Unknown words and missing boxes give zero, still tied to both probes.
    with capture_attention_inputs(model, -1) as tap:
        enc = model.encode(ids, pixels, thw)
    for b, c in ((torch.full((1, 4), float("nan")), classes),
                 (box, torch.full((1, 2), -100))):
        probes.zero_grad()
        zero = object_loss(probes, tap, image_mask, enc.grid_hw, b, c)
        assert float(zero.detach()) == 0.0
        zero.backward(retain_graph=True)
        assert probes.colour.weight.grad is not None and probes.shape.weight.grad is not None


def test_train_with_readouts_saves_them_beside_the_model_and_resumes_exactly(tmp_path,
                                                                            capsys):
    data = _with_named_sky(write_plane_dataset(tmp_path / "d", 4, 0))
    base = [sys.executable, "-m", "depthvlm_ros.cli", "train", "--train", str(data),
            "--arch", "test", "--canonical-fx", "100", "--max-image-tokens", "64",
            "--batch-size", "2", "--workers", "0", "--threads", "1", "--ckpt-every", "3",
            "--device", "cpu", "--log-every", "1", "--text-mix", "ground=1,dense=1",
            "--locate-weight", "2", "--select-weight", "1", "--select-layer", "-1",
            "--object-weight", "1", "--stages", "0:6:2e-3"]
    env = dict(os.environ, OMP_NUM_THREADS="1", DEPTHVLM_TRAIN_DUMP_PARAMS="1")
    full = tmp_path / "full"
    res = run_process_tree(base + ["--out", str(full)], env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in (full / "train_log.jsonl").read_text().splitlines()]
    losses = [r["locate_loss"] for r in rows if r["type"] == "train"]
    assert len(losses) == 6 and all(np.isfinite(losses)) and min(losses) > 0
    # Zero in a step whose batch asks no grounding question, positive in the others.
    losses = [r["select_loss"] for r in rows if r["type"] == "train"]
    assert len(losses) == 6 and all(np.isfinite(losses)) and max(losses) > 0
    # The sky's colour is a known word: the probes' loss is positive wherever it is asked.
    losses = [r["object_loss"] for r in rows if r["type"] == "train"]
    assert len(losses) == 6 and all(np.isfinite(losses)) and max(losses) > 0
    ck = full / "checkpoints" / "step-0000003"
    readouts = load_file(str(ck / READOUTS_FILE))
    assert set(readouts) == {"token_xy.weight", "token_xy.bias", "reply_xy.weight",
                             "reply_xy.bias"}
    probes = load_file(str(ck / OBJECT_PROBES_FILE))
    assert set(probes) == {"colour.weight", "colour.bias", "shape.weight", "shape.bias"}
    # Model folders stay stock: no readout or probe weights in them, none next to them.
    weights = load_file(str(full / "final" / "model.safetensors"))
    assert not any("readout" in k or "token_xy" in k or "colour" in k for k in weights)
    assert not (full / "final" / READOUTS_FILE).exists()
    assert not (full / "final" / OBJECT_PROBES_FILE).exists()
    # The readouts' own report reads them back from the checkpoint.
    report = _script("locate_readouts_eval")
    assert report.main(["--checkpoint", str(ck), "--data", str(data), "--select-layer", "-1"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["objects"] == 4
    assert 0 < scores["token_mse"] < 1 and 0 <= scores["reply_inside_box"] <= 1
    assert 0 < scores["select_mass"] < 1 and 0 < scores["select_mass_uniform"] < 1
    # A model folder has no readouts: selection only, said so.
    assert report.main(["--checkpoint", str(full / "final"), "--data", str(data),
                        "--select-layer", "-1"]) == 0
    assert "no position readouts" in capsys.readouterr().err
    assert "token_mse" not in json.loads(capsys.readouterr().out or "{}")
    # A layer the model does not have is a clear error, not a traceback.
    assert report.main(["--checkpoint", str(ck), "--data", str(data),
                        "--select-layer", "5"]) == 2
    assert "outside the LLM's 1 layers" in capsys.readouterr().err
    # Resuming from step 3 restores the readouts and probes too: their gradients shape the
    # model, so fresh ones would end on other weights.
    resumed = tmp_path / "resumed"
    res = run_process_tree(base + ["--out", str(resumed), "--resume", str(ck)], env)
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((full / "params_rank0.json").read_text())["params"]
    b = json.loads((resumed / "params_rank0.json").read_text())["params"]
    assert a == b


def test_object_probe_scores_both_sides_against_the_commonest_label(tmp_path, capsys):
    data = _with_named_sky(write_plane_dataset(tmp_path / "d", 6, 0))
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for i, row in enumerate(rows):   # two colours and two kinds to tell apart
        row["object_label"] = ["blue sky", "grey wall"][i % 2]
        row["prompt"] = f"How far is the {row['object_label']} from the camera?"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    folder = write_model_folder(model, tok, tmp_path / "model", meta={"canonical_fx": 100.0})
    probe = _script("object_probe")
    args = ["--model", str(folder), "--fit", str(data), "--test", str(data), "--objects", "0",
            "--layer", "-1", "--steps", "50"]
    assert probe.main(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["objects_fit"] == report["objects_test"] == 6
    for side in ("image_tokens_colour", "image_tokens_kind", "reply_colour", "reply_kind"):
        scores = report[side]
        assert scores["classes"] == 2 and 0 <= scores["accuracy"] <= 1
        assert scores["commonest_label"] == pytest.approx(0.5, abs=0.2)
    # The test model has one layer, so the states entering it are token embeddings: the
    # state before the reply is the same token whatever the question names, and its probe
    # can do no better than the commonest label (a probe reading the name's own tokens would).
    assert report["reply_colour"]["accuracy"] == report["reply_colour"]["commonest_label"]
    assert report["reply_kind"]["accuracy"] == report["reply_kind"]["commonest_label"]
    assert probe.main(args[:-4] + ["--layer", "3"]) == 2
    assert "outside the LLM's 1 layers" in capsys.readouterr().err
