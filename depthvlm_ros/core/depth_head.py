"""The DPT depth head of DepthVLM.

The module tree and the arithmetic follow the authors' release so that the ``depth_head.*``
tensors of DepthVLM-4B load unchanged and give the same numbers:

* one shared LayerNorm over the four token sequences, then 1x1 ``projects``;
* ``resize_layers``: transposed convs x8 / x4 / x2 and an identity, making a pyramid at 8, 4,
  2 and 1 times the token grid (1/4 .. 1/32 of the model image for Qwen3-VL's 32-pixel
  tokens);
* ``scratch.layerN_rn``: bias-free 3x3 convs to ``features`` channels;
* ``scratch.refinenet4..1``: RefineNet fusion bottom-up, each step upsampling by 2 with
  align-corners bilinear interpolation, ending at 1/2 resolution;
* ``scratch.output_conv1`` (features -> features/2), bilinear resize to the output size,
  ``scratch.output_conv2`` (-> 32, ReLU, -> 1, Softplus): depth in metres.

The head is a plain ``nn.Module`` whose ``forward`` takes tensors and returns a tensor, so it
exports to ONNX and TensorRT on its own. :meth:`DPTDepthHead.from_config` builds the head a
model config describes; the full model and the head-only export loader both use it, so they
build the same module tree from the same ``config.json``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .camera import TOKEN_PIXELS, check_token_pixels, token_pixels_of
from .errors import ConfigError, InputError

__all__ = ["DPTDepthHead", "DEFAULT_FEATURES", "DEFAULT_OUT_CHANNELS"]

DEFAULT_FEATURES = 256
DEFAULT_OUT_CHANNELS = (256, 512, 1024, 1024)
#: Width of the last hidden layer of the output head (fixed in the release).
_HEAD_HIDDEN = 32


class _ResidualConvUnit(nn.Module):
    """Two 3x3 convs with a skip.

    The release applies an in-place ReLU to the block input, so its skip connection carries
    ``relu(x)`` rather than ``x``. We reproduce that arithmetic explicitly (without in-place
    ops, which would also break autograd in other call sites).
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class _FusionBlock(nn.Module):
    """Adds a refined skip (when present) to the deeper features, refines, upsamples, 1x1 conv."""

    def __init__(self, features: int, has_skip: bool) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1, bias=True)
        if has_skip:
            # Attribute names match the release's state-dict keys ("resConfUnit").
            self.resConfUnit1 = _ResidualConvUnit(features)
        self.resConfUnit2 = _ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                size: Sequence[int] | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


def _config_value(config: Any, name: str, default: Any = None) -> Any:
    """A field of a config object (attribute) or of a parsed config.json (key)."""
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


class DPTDepthHead(nn.Module):
    """Dense metric depth from four token grids of a Qwen3-VL model.

    Args:
        dim_in: Channel width of the input tokens (the LLM hidden size; DeepStack merger
            outputs have the same width).
        features: Channels of the fusion stage (256 in the release).
        out_channels: Channels of the four pyramid levels ((256, 512, 1024, 1024) in the
            release). Smaller values make small CPU models.
        token_pixels: pixels per side of one token of the model the head belongs to (ViT
            patch x merge; 32 for Qwen3-VL): the default output size is ``token_pixels`` x
            the grid. Not a weight: the layers are the same for every token size.
    """

    def __init__(self, dim_in: int, features: int = DEFAULT_FEATURES,
                 out_channels: Sequence[int] = DEFAULT_OUT_CHANNELS,
                 token_pixels: int = TOKEN_PIXELS) -> None:
        super().__init__()
        self.token_pixels = check_token_pixels(token_pixels)
        out_channels = [int(c) for c in out_channels]
        if len(out_channels) != 4:
            raise ValueError(f"out_channels needs 4 entries, got {out_channels}")
        if features % 2:
            raise ValueError(f"features must be even, got {features}")
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=8, stride=8),
            nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=4, stride=4),
            nn.ConvTranspose2d(out_channels[2], out_channels[2], kernel_size=2, stride=2),
            nn.Identity(),
        ])
        scratch = nn.Module()
        for i, c in enumerate(out_channels, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        scratch.refinenet1 = _FusionBlock(features, has_skip=True)
        scratch.refinenet2 = _FusionBlock(features, has_skip=True)
        scratch.refinenet3 = _FusionBlock(features, has_skip=True)
        scratch.refinenet4 = _FusionBlock(features, has_skip=False)
        scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, _HEAD_HIDDEN, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(_HEAD_HIDDEN, 1, 1),
            nn.Softplus(),
        )
        self.scratch = scratch

    @classmethod
    def from_config(cls, config: Any) -> DPTDepthHead:
        """The head a model config describes (a ``Qwen3VLConfig`` or its ``config.json`` dict).

        The input width is the LLM hidden size (``text_config.hidden_size``); the fusion and
        pyramid widths come from ``depth_head_features`` / ``depth_head_out_channels`` and
        default to the release's, which the authors' config.json leaves out. The token size
        is ``vision_config``'s patch x merge (Qwen3-VL's 16 x 2 where a config.json omits
        them).

        Raises:
            ConfigError: the config names no hidden size, or a bad patch / merge size.
        """
        text = _config_value(config, "text_config") or {}
        dim_in = int(_config_value(text, "hidden_size") or _config_value(config, "hidden_size") or 0)
        if not dim_in:
            raise ConfigError("the model config has no text_config.hidden_size")
        features = int(_config_value(config, "depth_head_features", DEFAULT_FEATURES))
        out_channels = tuple(_config_value(config, "depth_head_out_channels", DEFAULT_OUT_CHANNELS))
        try:
            token_pixels = token_pixels_of(config)
        except InputError as exc:
            raise ConfigError(str(exc)) from None
        return cls(dim_in, features=features, out_channels=out_channels,
                   token_pixels=token_pixels)

    def forward(self, ds0: torch.Tensor, ds1: torch.Tensor, ds2: torch.Tensor,
                llm: torch.Tensor, out_hw: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Predict depth.

        Args:
            ds0, ds1, ds2: DeepStack merger outputs at the image tokens, each (B, gh, gw, C),
                tokens in raster order of the token grid.
            llm: LLM last hidden state at the image tokens, (B, gh, gw, C).
            out_hw: Output (height, width) in pixels; usually the model image,
                ``(token_pixels gh, token_pixels gw)``.

        Returns:
            Depth in metres, (B, H_out, W_out), strictly positive.
        """
        return self.decode(self.fuse(ds0, ds1, ds2, llm), int(out_hw[0]), int(out_hw[1]))

    def fuse(self, ds0: torch.Tensor, ds1: torch.Tensor, ds2: torch.Tensor,
             llm: torch.Tensor) -> torch.Tensor:
        """Pyramid and RefineNet fusion: (B, features/2, 16 gh, 16 gw) (half the model image
        for 32-pixel tokens)."""
        levels = []
        for idx, tokens in enumerate((ds0, ds1, ds2, llm)):
            x = self.norm(tokens).permute(0, 3, 1, 2)
            levels.append(self.resize_layers[idx](self.projects[idx](x)))
        s = self.scratch
        l1, l2, l3, l4 = (s.layer1_rn(levels[0]), s.layer2_rn(levels[1]),
                          s.layer3_rn(levels[2]), s.layer4_rn(levels[3]))
        x = s.refinenet4(l4, size=l3.shape[2:])
        x = s.refinenet3(x, l3, size=l2.shape[2:])
        x = s.refinenet2(x, l2, size=l1.shape[2:])
        x = s.refinenet1(x, l1)
        return s.output_conv1(x)

    def decode(self, fused: torch.Tensor, out_h, out_w) -> torch.Tensor:
        """Resize the fused features to (out_h, out_w) and predict depth (B, out_h, out_w).

        ``out_h``/``out_w`` may be Python ints or symbolic sizes (ONNX export keeps them
        dynamic that way).
        """
        x = F.interpolate(fused, size=(out_h, out_w), mode="bilinear", align_corners=True)
        return self.scratch.output_conv2(x).squeeze(1)

    def forward_tokens(self, features_list: Sequence[torch.Tensor], patch_h: int, patch_w: int,
                       output_size: Sequence[int] | None = None,
                       token_pixels: int | None = None) -> torch.Tensor:
        """The release's calling convention: four (B, N, C) sequences and the grid size.

        Args:
            features_list: [DeepStack 0, DeepStack 1, DeepStack 2, LLM last], each (B, N, C).
            patch_h, patch_w: Token grid; ``N == patch_h * patch_w``.
            output_size: (H, W) of the output, default ``(token_pixels patch_h,
                token_pixels patch_w)``.
            token_pixels: pixels per token side for the default output size; default the
                head's own (32, the release's, unless built from a config that says otherwise).
        """
        if len(features_list) != 4:
            raise ValueError(f"expected 4 feature sequences, got {len(features_list)}")
        grids = [f.reshape(f.shape[0], patch_h, patch_w, f.shape[-1]) for f in features_list]
        if output_size is None:
            tp = self.token_pixels if token_pixels is None else check_token_pixels(token_pixels)
            output_size = (patch_h * tp, patch_w * tp)
        return self.forward(*grids, out_hw=output_size)
