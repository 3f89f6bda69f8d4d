"""Growing a trained model deeper keeps its outputs, saves like any folder, and trains."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.folders import make_tiny_model, write_model_folder
from depthvlm_ros.core.model import load_depthvlm
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.train.config import ARCHITECTURES
from depthvlm_ros.core.train.grow import GrowSpec, format_grow, grow_model, parse_grow
from test_train import write_plane_dataset


@pytest.fixture(scope="module")
def tiny():
    # The test architecture: 3 vision blocks (DeepStack taps 0, 1, 2) and 1 decoder layer.
    model, tok = make_tiny_model(seed=3, **ARCHITECTURES["test"])
    return model.eval(), tok


def _predict(model, tok, question="How far is the point at pixel (40, 30)?"):
    pipe = DepthVLMPipeline(model, tok, DepthVLMConfig(canonical_fx=100.0, max_image_tokens=64,
                                                       device="cpu", head_backend="torch",
                                                       max_new_tokens=12),
                            model_canonical_fx=100.0)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    return pipe.predict(rgb, Intrinsics(110.0, 110.0, 60.0, 50.0, 128, 96), question)


def test_grown_model_gives_the_same_depth_and_answer(tiny, tmp_path):
    model, tok = tiny
    grown = grow_model(model, GrowSpec(vision=6, text=3)).eval()
    vision, text = grown.config.vision_config, grown.config.text_config
    assert vision.depth == 6 and text.num_hidden_layers == 3
    # Each tap moves behind its block's new copy: 0, 1, 2 -> 1, 3, 5.
    assert vision.deepstack_visual_indexes == [1, 3, 5]
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in model.parameters())
    before, after = _predict(model, tok), _predict(grown, tok)
    np.testing.assert_allclose(after.depth, before.depth, rtol=1e-5, atol=1e-6)
    assert after.answer == before.answer
    # The grown model is a standard folder: it reloads and still gives the same depth.
    folder = write_model_folder(grown, tok, tmp_path / "grown")
    reloaded = load_depthvlm(folder).eval()
    assert reloaded.config.vision_config.deepstack_visual_indexes == [1, 3, 5]
    np.testing.assert_allclose(_predict(reloaded, tok).depth, before.depth, rtol=1e-5, atol=1e-6)


def test_new_layers_start_as_identity_copies(tiny):
    model, _ = tiny
    grown = grow_model(model, GrowSpec(vision=6, text=3))
    old = model.model.visual.blocks
    new = grown.model.visual.blocks
    # Originals keep their weights at even positions; the copies add nothing yet.
    for i, block in enumerate(old):
        torch.testing.assert_close(new[2 * i].attn.qkv.weight, block.attn.qkv.weight)
        torch.testing.assert_close(new[2 * i + 1].attn.qkv.weight, block.attn.qkv.weight)
        assert not new[2 * i + 1].attn.proj.weight.any()
        assert not new[2 * i + 1].mlp.linear_fc2.bias.any()
    layers = grown.model.language_model.layers
    assert layers[0].self_attn.o_proj.weight.any()
    for layer in layers[1:]:
        assert not layer.self_attn.o_proj.weight.any() and not layer.mlp.down_proj.weight.any()
        assert layer.self_attn.layer_idx == list(layers).index(layer)  # own KV-cache slot


def test_grow_refuses_a_vision_depth_that_is_not_a_multiple(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="multiple"):
        grow_model(model, GrowSpec(vision=4))


def test_grow_to_the_same_depths_is_an_unchanged_copy(tiny):
    model, _ = tiny
    grown = grow_model(model, GrowSpec(vision=3, text=0))
    assert grown.config.vision_config.depth == 3


def test_grow_refuses_a_shallower_text_model():
    model, _ = make_tiny_model(seed=1, **{**ARCHITECTURES["test"], "text_layers": 2})
    with pytest.raises(ValueError, match="below"):
        grow_model(model, GrowSpec(text=1))


def test_parse_grow_round_trips_and_rejects_nonsense():
    assert parse_grow("vision=8,text=8") == GrowSpec(8, 8)
    assert parse_grow("text=6") == GrowSpec(0, 6)
    assert format_grow(parse_grow("vision=8")) == "vision=8"
    for bad in ("vision", "depth=3", "vision=x", "text=0"):
        with pytest.raises(ValueError):
            parse_grow(bad)


def _train(args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "depthvlm_ros.cli", "train", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_train_grows_the_init_model_and_trains_the_new_layers(tiny, tmp_path):
    model, tok = tiny
    init = write_model_folder(model, tok, tmp_path / "init", meta={"canonical_fx": 100.0})
    data = write_plane_dataset(tmp_path / "planes", 4, 0)
    out = tmp_path / "run"
    res = _train(["--train", str(data), "--out", str(out), "--init", str(init),
                  "--grow", "vision=6,text=2", "--max-image-tokens", "64", "--stages",
                  "0:3:2e-3", "--batch-size", "2", "--workers", "0", "--threads", "1",
                  "--device", "cpu", "--ckpt-every", "2", "--eval-every", "100"])
    assert res.returncode == 0, res.stderr[-3000:]
    grown = load_depthvlm(out / "final")
    assert grown.config.vision_config.depth == 6
    assert grown.config.text_config.num_hidden_layers == 2
    # The zero projections got gradients: the new layers are part of the model now.
    weights = load_file(str(out / "final" / "model.safetensors"))
    assert weights["model.visual.blocks.1.attn.proj.weight"].abs().sum() > 0
    assert weights["model.language_model.layers.1.mlp.down_proj.weight"].abs().sum() > 0


def test_train_refuses_grow_from_scratch(tmp_path):
    data = write_plane_dataset(tmp_path / "planes", 2, 0)
    res = _train(["--train", str(data), "--out", str(tmp_path / "run"), "--canonical-fx", "100",
                  "--grow", "vision=8"])
    assert res.returncode != 0
    assert "--grow deepens an --init model" in res.stderr
    res = _train(["--train", str(data), "--out", str(tmp_path / "run"), "--init",
                  "embedded", "--grow", "vision=8,colour=2"])
    assert res.returncode != 0 and "--grow" in res.stderr
