"""Configuration of HunyuanVideo's causal 3D VAE ("884-16c-hy"): 4x time, 8x8 space, 16 latent channels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

# Four blocks: three halve space (8x), the middle two also halve time (4x); the last block keeps the size.
NUM_BLOCKS = 4
SPATIAL_COMPRESSION = 2 ** (NUM_BLOCKS - 1)
TEMPORAL_COMPRESSION = 4
# GroupNorm weights do not record their group count; the release uses 32, smaller configs the largest that fits.
MAX_NORM_GROUPS = 32


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of the causal 3D VAE. Everything else (kernels, strides, attention layout) is fixed by the architecture."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 16
    in_channels: int = 3
    out_channels: int = 3
    norm_groups: int = 32
    mid_attention: bool = True
    scaling_factor: float = 0.476986

    def __post_init__(self) -> None:
        if len(self.block_out_channels) != NUM_BLOCKS:
            raise ValueError(
                f"the HunyuanVideo VAE has {NUM_BLOCKS} blocks (8x space, 4x time), got {len(self.block_out_channels)} "
                f"block channel counts {self.block_out_channels}."
            )
        uneven = [c for c in self.block_out_channels if c % self.norm_groups]
        if uneven:
            raise ValueError(f"norm_groups={self.norm_groups} does not divide the block channels {uneven}.")
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block must be at least 1, got {self.layers_per_block}.")

    @classmethod
    def released(cls) -> VAEConfig:
        """Tencent's released VAE (``vae/config.json``, about 246M parameters)."""
        return cls()

    @classmethod
    def tiny(cls) -> VAEConfig:
        """Same block structure and compression as the release with small channels, for tests and demos."""
        return cls(block_out_channels=(8, 16, 32, 32), norm_groups=infer_norm_groups((8, 16, 32, 32)))

    @property
    def spatial_compression(self) -> int:
        return SPATIAL_COMPRESSION

    @property
    def temporal_compression(self) -> int:
        return TEMPORAL_COMPRESSION

    def down_stride(self, block: int) -> tuple[int, int, int] | None:
        """``(t, h, w)`` stride of encoder block ``block``'s downsampler, or None when it has none."""
        if block == NUM_BLOCKS - 1:
            return None
        return (2 if block >= 1 else 1, 2, 2)

    def up_factor(self, block: int) -> tuple[int, int, int] | None:
        """``(t, h, w)`` factor of decoder block ``block``'s upsampler (counted from the latent side).

        Not a mirror of the encoder: in both, blocks 1 and 2 change time and block 0 only space.
        """
        return self.down_stride(block)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> VAEConfig:
        """Read the sizes from weights in this package's key layout (see ``keys.py``)."""
        down = sorted({int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.down_blocks.")})
        channels = tuple(state_dict[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"].shape[0] for i in down)
        layers = len({k.split(".")[4] for k in state_dict if k.startswith("encoder.down_blocks.0.resnets.")})
        return cls(
            block_out_channels=channels,
            layers_per_block=layers,
            latent_channels=state_dict["decoder.conv_in.conv.weight"].shape[1],
            in_channels=state_dict["encoder.conv_in.conv.weight"].shape[1],
            out_channels=state_dict["decoder.conv_out.conv.weight"].shape[0],
            norm_groups=infer_norm_groups(channels),
            mid_attention="decoder.mid_block.attentions.0.to_q.weight" in state_dict,
        )


def infer_norm_groups(channels: tuple[int, ...]) -> int:
    """32 when every block width allows it (the release), else the largest count dividing them all."""
    return min(MAX_NORM_GROUPS, math.gcd(*channels))
