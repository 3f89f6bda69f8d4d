"""Shared fixtures: tiny random DepthVLM models built locally (no download)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch

from depthvlm_ros.core.folders import make_tiny_model, write_model_folder
from kinect_frame import load_kinect_rgb


def _spread_weights(model: torch.nn.Module, seed: int, std: float = 0.25) -> None:
    # Default init (std 0.02) gives near-uniform logits, so every greedy answer is the same
    # token and a decoding test could pass by accident. Wider weights make answers varied.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                # The head gets a narrower spread so depths stay finite and moderate.
                scale = 0.04 if name.startswith("depth_head.") else std
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


@pytest.fixture(scope="session")
def tiny_model_and_tokenizer():
    """A tiny random DepthVLM (float32, eval) whose greedy answers vary between questions."""
    model, tok = make_tiny_model(seed=1)
    _spread_weights(model, seed=1)
    return model.eval(), tok


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model_and_tokenizer):
    """The tiny model written as a standard HF folder."""
    model, tok = tiny_model_and_tokenizer
    out = tmp_path_factory.mktemp("tiny_model")
    write_model_folder(model, tok, out, meta={"stage": "test-random"})
    return out


@pytest.fixture
def constant_head():
    """``with constant_head(model, metres):`` the depth head reads ``metres`` everywhere
    (zero last-layer weights, softplus bias = metres); the weights come back on exit."""
    @contextmanager
    def use(model, metres: float):
        conv = model.depth_head.scratch.output_conv2[2]
        saved = conv.weight.clone(), conv.bias.clone()
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.fill_(float(np.log(np.expm1(metres))))
        try:
            yield
        finally:
            with torch.no_grad():
                conv.weight.copy_(saved[0])
                conv.bias.copy_(saved[1])
    return use


@pytest.fixture(scope="session")
def kinect_frame():
    """The real Kinect Azure RGB frame (1920x1080 uint8) from the arcor2-kinect-azure wheel."""
    return load_kinect_rgb()
