"""The causal 3D VAE: encoder, decoder and the 1x1x1 convolutions around the latent.

A video of ``1 + 4k`` frames at ``H x W`` encodes to ``1 + k`` latent frames at ``H/8 x W/8``; frame 0 is
encoded on its own, so a single image is a one-frame video. Latents here are raw (not scaled by
``scaling_factor``), as ComfyUI's LATENT holds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VAEConfig
from .layers import NORM_EPS, CausalConv3d, Downsample, MidBlock, ResnetBlock, Upsample, norm_silu


def _resnets(in_channels: int, out_channels: int, layers: int, groups: int) -> nn.ModuleList:
    widths = [in_channels] + [out_channels] * layers
    return nn.ModuleList(ResnetBlock(a, b, groups) for a, b in zip(widths, widths[1:]))


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, stride) -> None:
        super().__init__()
        self.resnets = _resnets(in_channels, out_channels, layers, groups)
        self.downsamplers = nn.ModuleList([Downsample(out_channels, stride)]) if stride else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.downsamplers[0](x) if self.downsamplers else x


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, factor) -> None:
        super().__init__()
        self.resnets = _resnets(in_channels, out_channels, layers, groups)
        self.upsamplers = nn.ModuleList([Upsample(out_channels, factor)]) if factor else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return self.upsamplers[0](x) if self.upsamplers else x


class Encoder(nn.Module):
    """``[b 3 1+4k H W]`` pixels in [-1, 1] -> ``[b 2L 1+k H/8 W/8]`` latent mean and log-variance."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        channels, groups = config.block_out_channels, config.norm_groups
        self.conv_in = CausalConv3d(config.in_channels, channels[0])
        inputs = (channels[0],) + channels[:-1]
        self.down_blocks = nn.ModuleList(
            DownBlock(a, b, config.layers_per_block, groups, config.down_stride(i))
            for i, (a, b) in enumerate(zip(inputs, channels))
        )
        self.mid_block = MidBlock(channels[-1], groups, config.mid_attention)
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], eps=NORM_EPS)
        self.conv_out = CausalConv3d(channels[-1], 2 * config.latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            h = block(h)
        h = self.mid_block(h)
        return self.conv_out(h, prologue=norm_silu(self.conv_norm_out, h))


class Decoder(nn.Module):
    """``[b L 1+k h w]`` latent -> ``[b 3 1+4k 8h 8w]`` pixels in about [-1, 1]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        channels, groups = tuple(reversed(config.block_out_channels)), config.norm_groups
        self.conv_in = CausalConv3d(config.latent_channels, channels[0])
        self.mid_block = MidBlock(channels[0], groups, config.mid_attention)
        inputs = (channels[0],) + channels[:-1]
        self.up_blocks = nn.ModuleList(
            UpBlock(a, b, config.layers_per_block + 1, groups, config.up_factor(i))
            for i, (a, b) in enumerate(zip(inputs, channels))
        )
        self.conv_norm_out = nn.GroupNorm(groups, channels[-1], eps=NORM_EPS)
        self.conv_out = CausalConv3d(channels[-1], config.out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid_block(h)
        for block in self.up_blocks:
            h = block(h)
        return self.conv_out(h, prologue=norm_silu(self.conv_norm_out, h))


class CausalVideoVAE(nn.Module):
    """HunyuanVideo's causal 3D VAE. Inference only; ``decode``/``encode`` in ``codec.py`` add tiling."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv3d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv3d(config.latent_channels, config.latent_channels, 1)

    @property
    def device(self) -> torch.device:
        return self.post_quant_conv.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.post_quant_conv.weight.dtype

    def decode_tile(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latent ``[b L 1+k h w]`` -> pixels ``[b 3 1+4k 8h 8w]`` in about [-1, 1], in one piece."""
        return self.decoder(self.post_quant_conv(z.contiguous()))

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels ``[b 3 1+4k H W]`` in [-1, 1] -> the latent distribution's mean ``[b L 1+k H/8 W/8]``, in one piece."""
        latent = self.config.latent_channels
        # quant_conv's first L output channels are the mean; the log-variance is never needed.
        h = self.encoder(x.contiguous())  # tiles are often strided views; the layers want contiguous input
        return F.conv3d(h, self.quant_conv.weight[:latent], self.quant_conv.bias[:latent])
