"""Enhance-A-Video: scale the video tokens' attention output by how much frames attend to each other.

Luo et al., NUS-HPC-AI-Lab/Enhance-A-Video (read, not copied). For every spatial position and head, the
*temporal* attention map is the softmax over the frames of ``q_t . k_t' / sqrt(d)`` at that position
(enhance_a_video/models/hunyuanvideo.py:56-66: ``B N (T S) C -> (B S) N T C``). The factor is the mean of
its off-diagonal entries, averaged over positions and heads, times ``frames + weight``, and at least 1
(enhance_a_video/enhance.py:6-30). It multiplies the video tokens' attention output in every block
(enhance_a_video/models/hunyuanvideo.py:162-165; kijai's HyVideoEnhanceAVideo does the same in the
double and single blocks before their output projection, hyvideo/modules/models.py:276-300, 470-531,
which is where this pack applies it, as the single blocks merge that projection with their MLP).

One deliberate difference: the mean is taken per video, not over the whole batch, so that true CFG
gives the same result batched or one prompt after the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .step_range import StepRange

SPATIAL_CHUNK = 256  # positions per temporal-map chunk: bounds the [chunk, heads, T, T] float32 maps


@dataclass(frozen=True)
class EnhanceAVideo:
    """``weight`` raises the factor (2 in kijai's node, 4 in the authors' HunyuanVideo example); the blocks
    kinds it acts in; the steps it acts on."""

    weight: float = 2.0
    double_blocks: bool = True
    single_blocks: bool = True
    steps: StepRange = field(default_factory=StepRange)

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"the Enhance-A-Video weight must be 0 or more (2 to 4 is usual), got {self.weight}.")

    def acts_in(self, name: str) -> bool:
        return (self.double_blocks and name.startswith("double_blocks.")) or (
            self.single_blocks and name.startswith("single_blocks.")
        )


def factor_from_maps(maps: torch.Tensor, weight: float) -> torch.Tensor:
    """The factor from temporal attention maps ``[..., T, T]`` (rows sum to one), all of one video:
    ``max(1, mean of the off-diagonal entries * (T + weight))``."""
    frames = maps.shape[-1]
    if frames == 1:
        return maps.new_ones(())  # no other frame to attend to: no enhancement (the formula divides by 0)
    off_diagonal = maps.sum(dim=(-2, -1)) - maps.diagonal(dim1=-2, dim2=-1).sum(-1)
    mean = off_diagonal.mean() / (frames * frames - frames)
    return (mean * (frames + weight)).clamp(min=1)


def temporal_maps(q: torch.Tensor, k: torch.Tensor, frames: int) -> torch.Tensor:
    """Temporal attention maps ``[positions, heads, T, T]`` float32 of one video's tokens ``q, k``
    ``[T*S, H, D]`` in (t, h, w) order."""
    q = q.unflatten(0, (frames, -1)).permute(1, 2, 0, 3).float()  # s h t d
    k = k.unflatten(0, (frames, -1)).permute(1, 2, 0, 3).float()
    return (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)


def enhance_factor(q: torch.Tensor, k: torch.Tensor, frames: int, weight: float) -> torch.Tensor:
    """The factor per video, ``[B, 1, 1]`` float32, from the video tokens' rotated ``q, k`` ``[B, T*S, H, D]``.

    Same value as :func:`factor_from_maps` over :func:`temporal_maps`, computed a few positions at a time.
    """
    factors = []
    for qb, kb in zip(q, k):
        positions = qb.shape[0] // frames
        q_st, k_st = qb.unflatten(0, (frames, positions)), kb.unflatten(0, (frames, positions))
        off_diagonal = torch.zeros((), dtype=torch.float32, device=q.device)
        for s in range(0, positions, SPATIAL_CHUNK):
            chunk = slice(s, min(s + SPATIAL_CHUNK, positions))
            maps = temporal_maps(q_st[:, chunk].flatten(0, 1), k_st[:, chunk].flatten(0, 1), frames)
            off_diagonal += maps.sum() - maps.diagonal(dim1=-2, dim2=-1).sum()
        maps_count = positions * q.shape[2]
        if frames == 1:
            factors.append(off_diagonal.new_ones(()))
            continue
        mean = off_diagonal / maps_count / (frames * frames - frames)
        factors.append((mean * (frames + weight)).clamp(min=1))
    return torch.stack(factors).reshape(-1, 1, 1)
