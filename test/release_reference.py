"""The DepthVLM release's depth head, restated by hand: its state-dict layout and arithmetic.

Shared by the head and model tests as the reference our head must match (not a test module).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
