"""The DPT head: shapes, the release's state-dict layout, the release's arithmetic, from_config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthvlm_ros.core.depth_head import DPTDepthHead
from release_reference import reference_forward, release_key_shapes


def test_from_config_reads_a_config_object_and_its_json_alike():
    from transformers import Qwen3VLConfig

    from depthvlm_ros.core.errors import ConfigError

    small = Qwen3VLConfig(text_config={"hidden_size": 48}, depth_head_features=16,
                          depth_head_out_channels=[8, 16, 32, 32])
    want = {k: tuple(v.shape) for k, v in DPTDepthHead(48, 16, (8, 16, 32, 32)).state_dict().items()}
    for source in (small, small.to_dict()):
        got = DPTDepthHead.from_config(source).state_dict()
        assert {k: tuple(v.shape) for k, v in got.items()} == want
    # The authors' config.json names no head widths: the release's apply.
    release = DPTDepthHead.from_config({"text_config": {"hidden_size": 2560}})
    assert {k: tuple(v.shape) for k, v in release.state_dict().items()} == release_key_shapes(2560)
    with pytest.raises(ConfigError, match="hidden_size"):
        DPTDepthHead.from_config({"text_config": {}})


def test_release_key_set_loads_strictly_4b_dims():
    head = DPTDepthHead(2560)
    expected = release_key_shapes(2560)
    got = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert got == expected
    sd = {k: torch.zeros(s) for k, s in expected.items()}
    result = head.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("grid", [(1, 1), (2, 3), (5, 4), (7, 11)])
def test_output_shapes(grid):
    gh, gw = grid
    head = DPTDepthHead(24, features=16, out_channels=(8, 16, 32, 32)).eval()
    feats = [torch.randn(2, gh, gw, 24) for _ in range(4)]
    with torch.no_grad():
        full = head(*feats, out_hw=(32 * gh, 32 * gw))
        odd = head(*feats, out_hw=(50, 77))
    assert full.shape == (2, 32 * gh, 32 * gw)
    assert odd.shape == (2, 50, 77)
    assert bool((full > 0).all()), "Softplus output must be strictly positive"


@pytest.mark.parametrize("grid,out", [((3, 4), None), ((5, 2), (150, 70))])
def test_matches_release_arithmetic(grid, out):
    torch.manual_seed(0)
    gh, gw = grid
    # float64 with wide random weights everywhere (also the norm), so that ReLU placement
    # matters and only real arithmetic differences, not rounding, could fail the comparison.
    head = DPTDepthHead(40, features=32, out_channels=(16, 32, 64, 64)).eval().double()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.3)
    feats = [torch.randn(1, gh * gw, 40, dtype=torch.float64) for _ in range(4)]
    out_size = out or (32 * gh, 32 * gw)
    sd = {k: v.clone() for k, v in head.state_dict().items()}
    with torch.no_grad():
        ours = head.forward_tokens(feats, gh, gw, out)
        ref = reference_forward(sd, [f.clone() for f in feats], gh, gw, out_size)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-6)



def test_reference_is_sensitive_to_the_skip_detail(monkeypatch):
    """A head whose skip carried x instead of relu(x) must fail the comparison above."""
    from depthvlm_ros.core import depth_head as dh

    torch.manual_seed(0)
    head = DPTDepthHead(40, features=32, out_channels=(16, 32, 64, 64)).eval().double()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.3)
    feats = [torch.randn(1, 12, 40, dtype=torch.float64) for _ in range(4)]
    sd = {k: v.clone() for k, v in head.state_dict().items()}

    def plain_skip(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))

    monkeypatch.setattr(dh._ResidualConvUnit, "forward", plain_skip)
    with torch.no_grad():
        wrong = head.forward_tokens(feats, 3, 4)
        ref = reference_forward(sd, [f.clone() for f in feats], 3, 4, (96, 128))
    assert (wrong - ref).abs().max() / ref.abs().max() > 1e-3
