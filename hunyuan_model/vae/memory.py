"""How much memory one tile takes, and the rule behind ``tiling="auto"``.

The estimate follows this package's layers (``layers.py``): at any moment a block holds its input, one
convolution output and, when widths change, the shortcut; normalised activations exist only a chunk
at a time. The largest such set is at full resolution in the decoder's last block (released sizes:
256 + 2 x 128 = 512 values per output voxel, about 4.4 GB in bf16 for a 256 px x 64-frame tile).

Auto rule: walk ``AUTO_LADDER`` from the largest tiles down and take the first entry whose largest
tile is estimated to fit in ``USABLE_FRACTION`` of the free memory (the rest is left for allocator
fragmentation and convolution workspaces); if none fits, the smallest entry.
"""

from __future__ import annotations

import torch

from .config import VAEConfig
from .layers import ATTENTION_SCORE_ELEMENTS, CHUNK_ELEMENTS
from .tiling import Tiling, decode_plan, encode_plan

USABLE_FRACTION = 0.7

AUTO_LADDER: tuple[Tiling, ...] = (
    Tiling.off(),
    Tiling(0, 0, 64, 16),
    Tiling(512, 128, 64, 16),
    Tiling(384, 96, 64, 16),
    Tiling(256, 64, 64, 16),  # Tencent's default
    Tiling(256, 64, 32, 8),
    Tiling(256, 64, 16, 4),
    Tiling(192, 48, 16, 4),
    Tiling(128, 32, 16, 4),
    Tiling(128, 32, 8, 4),
)


def auto_tiling(
    config: VAEConfig, shape: tuple[int, ...], dtype: torch.dtype, free_bytes: int, encode: bool = False
) -> Tiling:
    """The tiling ``"auto"`` picks for a latent ``[b c t h w]`` (decode) or video ``[b c f h w]`` (encode)."""
    budget = free_bytes * USABLE_FRACTION
    for tiling in AUTO_LADDER:
        if estimate_bytes(config, shape, tiling, dtype, encode) <= budget:
            return tiling
    return AUTO_LADDER[-1]


def estimate_bytes(
    config: VAEConfig, shape: tuple[int, ...], tiling: Tiling, dtype: torch.dtype, encode: bool = False
) -> int:
    """Estimated peak device memory (beyond the weights) for the largest tile of this tiling."""
    if encode:
        return encode_peak_bytes(config, encode_plan(shape, tiling).largest_tile, dtype)
    return decode_peak_bytes(config, decode_plan(shape, tiling).largest_tile, dtype)


def decode_peak_bytes(config: VAEConfig, latent_tile: tuple[int, int, int], dtype: torch.dtype) -> int:
    """Peak bytes to decode one latent tile ``(t, h, w)``: activations, chunk temporaries, the float32 output."""
    t, h, w = latent_tile
    channels = tuple(reversed(config.block_out_channels))
    voxels = t * h * w
    peaks = [(config.latent_channels + channels[0]) * voxels, 6 * channels[0] * voxels]
    width = channels[0]
    for block, out in enumerate(channels):
        peaks.append(_resnet_elements(width, out) * t * h * w)
        width = out
        factor = config.up_factor(block)
        if factor:
            before = t * h * w
            t, h, w = (t - 1) * factor[0] + 1, h * factor[1], w * factor[2]
            peaks.append(out * (before + t * h * w))
    peaks.append((width + config.out_channels) * t * h * w)
    output = 2 * config.out_channels * t * h * w * 4
    return _total(max(peaks), dtype, latent_tile) + output


def encode_peak_bytes(config: VAEConfig, video_tile: tuple[int, int, int], dtype: torch.dtype) -> int:
    """Peak bytes to encode one video tile ``(f, h, w)``: the pixels, activations and chunk temporaries."""
    f, h, w = video_tile
    channels = config.block_out_channels
    pixels = config.in_channels * f * h * w * (4 + dtype.itemsize)
    peaks = [(config.in_channels + channels[0]) * f * h * w]
    width = channels[0]
    for block, out in enumerate(channels):
        peaks.append(_resnet_elements(width, out) * f * h * w)
        width = out
        stride = config.down_stride(block)
        if stride:
            before = f * h * w
            f, h, w = (f - 1) // stride[0] + 1, -(-h // stride[1]), -(-w // stride[2])
            peaks.append(out * (before + f * h * w))
    peaks += [6 * width * f * h * w, (width + 2 * config.latent_channels) * f * h * w]
    return _total(max(peaks), dtype, (f, h, w)) + pixels


def _resnet_elements(in_channels: int, out_channels: int) -> int:
    """Values per voxel a resnet holds at once: its input, conv1's output and, when widths differ, the shortcut."""
    return in_channels + out_channels + (out_channels if in_channels != out_channels else 0)


def _total(peak_elements: int, dtype: torch.dtype, attention_tile: tuple[int, int, int]) -> int:
    """Activations plus one convolution chunk's temporaries (float32 prologue, padded copy, result) and the
    attention scores at the lowest resolution ``attention_tile``."""
    t, h, w = attention_tile
    chunk = min(CHUNK_ELEMENTS, peak_elements) * (4 + 3 * dtype.itemsize)
    scores = min(ATTENTION_SCORE_ELEMENTS, h * w * t * h * w) * 4
    return peak_elements * dtype.itemsize + chunk + scores
