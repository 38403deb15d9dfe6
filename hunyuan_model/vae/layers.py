"""Building blocks of the causal 3D VAE, all on ``[b c t h w]`` video tensors.

Module names follow Tencent's checkpoint keys (identical to diffusers' ``AutoencoderKLHunyuanVideo``).
The blocks are inference-only and save memory in two ways that leave the math unchanged:

- GroupNorm + SiLU never exist at full size: statistics come from one pass over the input, and the
  normalisation runs frame-chunk by frame-chunk inside the next convolution (``CausalConv3d.run``).
- Residual sums accumulate in place into the block input, which the caller no longer needs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS = 1e-6
# A convolution handles at most this many input elements at a time (plus the causal context frames):
# 16M elements keep the per-chunk temporaries near 200 MB while a chunk still fills a GPU.
CHUNK_ELEMENTS = 1 << 24
# Per-chunk budget for attention scores (query rows x key tokens) on backends that materialise them.
ATTENTION_SCORE_ELEMENTS = 1 << 26

Frames = Callable[[int, int], torch.Tensor]  # (first, stop) -> input frames [b c stop-first h w], prologue applied


class CausalConv3d(nn.Module):
    """A 3-D convolution that pads by repeating edge values: symmetrically in space, ``kernel - 1`` frames in
    front in time, so output frame ``t`` sees input frames ``<= t`` only."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride=(1, 1, 1)) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride)

    def forward(
        self,
        x: torch.Tensor,
        prologue: Callable[[torch.Tensor], torch.Tensor] | None = None,
        accumulate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [b c t h w]`` -> ``[b c' t' h' w']``. ``prologue`` (an elementwise map such as norm + SiLU) is
        applied to the input chunk by chunk; with ``accumulate`` the result is added into that tensor in place."""

        def frames(first: int, stop: int) -> torch.Tensor:
            chunk = x[:, :, first:stop]
            return chunk if prologue is None else prologue(chunk)

        return self.run(frames, tuple(x.shape), accumulate)

    def run(self, frames: Frames, in_shape: tuple[int, ...], accumulate: torch.Tensor | None = None) -> torch.Tensor:
        """Convolve an input of ``in_shape`` that ``frames`` produces on demand, a chunk of output frames at a time."""
        _, channels, length, height, width = in_shape
        kt, kh, kw = self.conv.kernel_size
        st = self.conv.stride[0]
        out_length = (length - 1) // st + 1
        step = max(1, CHUNK_ELEMENTS // (channels * height * width * st))
        out = accumulate
        for first in range(0, out_length, step):
            stop = min(first + step, out_length)
            # Output frames [first, stop) read padded frames [first*st, (stop-1)*st + kt), shifted by kt-1 pad frames.
            lo, hi = first * st - (kt - 1), (stop - 1) * st + 1
            chunk = frames(max(lo, 0), hi)
            if kt > 1 or kh > 1:
                chunk = F.pad(chunk, (kw // 2, kw // 2, kh // 2, kh // 2, max(0, -lo), 0), mode="replicate")
            result = _conv3d(self.conv, chunk)
            del chunk
            if out is None:
                if stop == out_length:
                    return result  # a single chunk: no copy
                out = result.new_empty(result.shape[:2] + (out_length,) + result.shape[3:])
            if accumulate is None:
                out[:, :, first:stop] = result
            else:
                out[:, :, first:stop] += result
        return out


def _conv3d(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    # On the CPU, PyTorch sends float32 inputs with small batch x channels x frames x height to a reference kernel
    # up to 10x slower than oneDNN's (which it picks for larger ones); call oneDNN directly there.
    if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        zeros, ones = [0, 0, 0], [1, 1, 1]
        return torch.ops.aten.mkldnn_convolution(x, conv.weight, conv.bias, zeros, list(conv.stride), ones, 1)
    return conv(x)


def norm_silu(norm: nn.GroupNorm, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """GroupNorm followed by SiLU as an elementwise map for chunks of ``x``, with statistics over all of ``x``."""
    scale, shift = _group_affine(norm, x)

    def apply(chunk: torch.Tensor) -> torch.Tensor:
        out = torch.mul(chunk, scale)  # float32: one rounding back to the compute dtype, as in a fused kernel
        out.add_(shift)
        return F.silu(out, inplace=True).to(chunk.dtype)

    return apply


def _group_affine(norm: nn.GroupNorm, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel float32 ``scale, shift`` with ``norm(x) == x * scale + shift``, each ``[b c 1 1 1]``."""
    b, c = x.shape[:2]
    groups = x.reshape(b, norm.num_groups, 1, -1)
    # One group at a time, so that temporaries (a float32 copy, the normalised output we discard) stay 1/groups of x.
    moments = [_mean_rstd(groups[:, g], norm.eps) for g in range(norm.num_groups)]
    per_channel = c // norm.num_groups
    mean = torch.cat([m for m, _ in moments], dim=1).repeat_interleave(per_channel, dim=1)
    rstd = torch.cat([r for _, r in moments], dim=1).repeat_interleave(per_channel, dim=1)
    scale = rstd * norm.weight.float()
    shift = norm.bias.float() - mean * scale
    return scale.view(b, c, 1, 1, 1), shift.view(b, c, 1, 1, 1)


def _mean_rstd(group: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 mean and 1/std of ``[b 1 n]``, each ``[b 1]``, as ``nn.GroupNorm`` computes them.

    On the CPU GroupNorm's own kernel is 10x faster than ``var_mean``. On a GPU it is not: it reduces each
    (sample, group) row in one thread block, and one group here is one row, so a 17M-value group at full
    resolution would run on a single multiprocessor; ``var_mean`` spreads one reduction over the whole GPU.
    """
    group = group.float().contiguous()
    return (_native_moments if group.device.type == "cpu" else _reduced_moments)(group, eps)


def _native_moments(group: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _, mean, rstd = torch.native_group_norm(group, None, None, group.shape[0], 1, group.shape[-1], 1, eps)
    return mean, rstd


def _reduced_moments(group: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(group, dim=-1, correction=0)
    return mean, torch.rsqrt(var + eps)


class ResnetBlock(nn.Module):
    """GroupNorm, SiLU, causal 3x3x3 conv, twice, plus the input (through a 1x1x1 conv when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=NORM_EPS)
        self.conv1 = CausalConv3d(in_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=NORM_EPS)
        self.conv2 = CausalConv3d(out_channels, out_channels)
        self.conv_shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Consumes ``x``: with equal widths the result is accumulated into it."""
        residual = x if self.conv_shortcut is None else self.conv_shortcut(x)
        h = self.conv1(x, prologue=norm_silu(self.norm1, x))
        return self.conv2(h, prologue=norm_silu(self.norm2, h), accumulate=residual)


class Downsample(nn.Module):
    """A strided causal 3x3x3 conv: ``(1, 2, 2)`` halves space, ``(2, 2, 2)`` also maps ``1 + 2k`` frames to ``1 + k``."""

    def __init__(self, channels: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling then a causal 3x3x3 conv. The first frame is only enlarged in space, so
    ``1 + k`` frames become ``1 + 2k`` when time is upsampled."""

    def __init__(self, channels: int, factor: tuple[int, int, int]) -> None:
        super().__init__()
        self.factor = factor
        self.conv = CausalConv3d(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        ft, fh, fw = self.factor
        length = t if ft == 1 else 2 * t - 1

        def frames(first: int, stop: int) -> torch.Tensor:
            # Upsampled frame m repeats input frame m (no time factor) or (m + 1) // 2 (frame 0 once, then pairs).
            source = x[:, :, first:stop] if ft == 1 else x[:, :, [(m + 1) // 2 for m in range(first, stop)]]
            return _repeat_space(source, fh, fw)

        return self.conv.run(frames, (b, c, length, h * fh, w * fw))


def _repeat_space(x: torch.Tensor, fh: int, fw: int) -> torch.Tensor:
    """Nearest-neighbour enlargement of ``[b c t h w]`` by ``fh x fw`` in one allocation, for any dtype."""
    b, c, t, h, w = x.shape
    return x[:, :, :, :, None, :, None].expand(b, c, t, h, fh, w, fw).reshape(b, c, t, h * fh, w * fw)


class MidAttention(nn.Module):
    """Single-head self-attention over all ``t*h*w`` positions, where a position sees its own and earlier frames
    (Tencent's frame-causal mask), with a GroupNorm in front and the input added back."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=NORM_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Consumes ``x``: the attention output is added into it."""
        b, c, t, h, w = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # b (t h w) c
        q, k, v = (proj(tokens).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))  # b 1 n c
        del tokens
        out = self.to_out[0](frame_causal_attention(q, k, v, frame_tokens=h * w).squeeze(1))
        return x.add_(out.transpose(1, 2).reshape(b, c, t, h, w))


def frame_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frame_tokens: int) -> torch.Tensor:
    """Attention of ``[b heads n d]`` queries in frame ``f`` over the keys of frames ``0..f``.

    The mask Tencent builds is ``n x n``; running each query frame against its key prefix gives the same result
    without it, and query rows are split further so that score matrices stay within budget.
    """
    out = torch.empty_like(q)
    n = q.shape[2]
    for frame_start in range(0, n, frame_tokens):
        keys = frame_start + frame_tokens
        rows = max(1, ATTENTION_SCORE_ELEMENTS // keys)
        for first in range(frame_start, keys, rows):
            stop = min(first + rows, keys)
            out[:, :, first:stop] = F.scaled_dot_product_attention(q[:, :, first:stop], k[:, :, :keys], v[:, :, :keys])
    return out


class MidBlock(nn.Module):
    """Resnet, attention, resnet at the lowest resolution."""

    def __init__(self, channels: int, groups: int, attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([MidAttention(channels, groups)] if attention else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        for attention in self.attentions:
            x = attention(x)
        return self.resnets[1](x)
