"""The DPT head: shapes, the release's state-dict layout, the release's arithmetic, from_config."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthvlm_ros.core.depth_head import DPTDepthHead


def release_key_shapes(dim_in: int, feat: int = 256, oc=(256, 512, 1024, 1024)) -> dict:
    """Every tensor of the authors' DPTDepthHead, written out by hand from their layout."""
    keys = {"norm.weight": (dim_in,), "norm.bias": (dim_in,)}
    for i, c in enumerate(oc):
        keys[f"projects.{i}.weight"] = (c, dim_in, 1, 1)
        keys[f"projects.{i}.bias"] = (c,)
    for i, k in enumerate((8, 4, 2)):
        keys[f"resize_layers.{i}.weight"] = (oc[i], oc[i], k, k)
        keys[f"resize_layers.{i}.bias"] = (oc[i],)
    for i, c in enumerate(oc, start=1):
        keys[f"scratch.layer{i}_rn.weight"] = (feat, c, 3, 3)
    for n in (1, 2, 3, 4):
        pre = f"scratch.refinenet{n}"
        keys[f"{pre}.out_conv.weight"] = (feat, feat, 1, 1)
        keys[f"{pre}.out_conv.bias"] = (feat,)
        for unit in ((1, 2) if n != 4 else (2,)):
            for conv in (1, 2):
                keys[f"{pre}.resConfUnit{unit}.conv{conv}.weight"] = (feat, feat, 3, 3)
                keys[f"{pre}.resConfUnit{unit}.conv{conv}.bias"] = (feat,)
    keys["scratch.output_conv1.weight"] = (feat // 2, feat, 3, 3)
    keys["scratch.output_conv1.bias"] = (feat // 2,)
    keys["scratch.output_conv2.0.weight"] = (32, feat // 2, 3, 3)
    keys["scratch.output_conv2.0.bias"] = (32,)
    keys["scratch.output_conv2.2.weight"] = (1, 32, 1, 1)
    keys["scratch.output_conv2.2.bias"] = (1,)
    return keys


def reference_forward(sd: dict, feats, ph: int, pw: int, out_size) -> torch.Tensor:
    """The release's arithmetic re-stated functionally from its source, in-place ReLUs included.

    In the release, ``ResidualConvUnit`` runs ``nn.ReLU(inplace=True)`` on its input before
    the skip, so the skip adds relu(x). This function mutates exactly as the release does.
    """
    dim = sd["norm.weight"].shape[0]
    outs = []
    for i, x in enumerate(feats):
        b = x.shape[0]
        x = F.layer_norm(x, (dim,), sd["norm.weight"], sd["norm.bias"])
        x = x.permute(0, 2, 1).reshape(b, dim, ph, pw)
        x = F.conv2d(x, sd[f"projects.{i}.weight"], sd[f"projects.{i}.bias"])
        if i < 3:
            k = (8, 4, 2)[i]
            x = F.conv_transpose2d(x, sd[f"resize_layers.{i}.weight"], sd[f"resize_layers.{i}.bias"], stride=k)
        outs.append(x)

    def rcu(pre, x):
        x = F.relu_(x)  # in place, as nn.ReLU(inplace=True) in the release
        out = F.conv2d(x, sd[f"{pre}.conv1.weight"], sd[f"{pre}.conv1.bias"], padding=1)
        out = F.relu_(out)
        out = F.conv2d(out, sd[f"{pre}.conv2.weight"], sd[f"{pre}.conv2.bias"], padding=1)
        return out + x

    def fusion(n, x0, x1=None, size=None):
        pre = f"scratch.refinenet{n}"
        out = x0
        if x1 is not None:
            out = out + rcu(f"{pre}.resConfUnit1", x1)
        out = rcu(f"{pre}.resConfUnit2", out)
        if size is None:
            out = F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        return F.conv2d(out, sd[f"{pre}.out_conv.weight"], sd[f"{pre}.out_conv.bias"])

    rn = [F.conv2d(o, sd[f"scratch.layer{i}_rn.weight"], padding=1) for i, o in enumerate(outs, 1)]
    out = fusion(4, rn[3], size=rn[2].shape[2:])
    out = fusion(3, out, rn[2], size=rn[1].shape[2:])
    out = fusion(2, out, rn[1], size=rn[0].shape[2:])
    out = fusion(1, out, rn[0])
    out = F.conv2d(out, sd["scratch.output_conv1.weight"], sd["scratch.output_conv1.bias"], padding=1)
    out = F.interpolate(out, size=out_size, mode="bilinear", align_corners=True)
    out = F.conv2d(out, sd["scratch.output_conv2.0.weight"], sd["scratch.output_conv2.0.bias"], padding=1)
    out = F.relu(out)
    out = F.conv2d(out, sd["scratch.output_conv2.2.weight"], sd["scratch.output_conv2.2.bias"])
    return F.softplus(out).squeeze(1)


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
