"""RIFLEx: lower one temporal RoPE frequency so that videos longer than the training length do not repeat.

Zhao et al., "RIFLEx: A Free Lunch for Length Extrapolation in Video Diffusion Transformers" (2025),
as thu-ml/RIFLEx implements it (read, not copied):

- Each temporal dimension pair ``j`` (1-based) of RoPE turns by ``theta ** (-2 (j-1) / d)`` per latent
  frame, a period of ``N_j = round(2 pi / freq_j)`` frames (riflex_utils.py:78-83, Eq. 4).
- The *intrinsic* pair ``k`` is the one whose period is closest to the frame at which the pretrained
  model starts to repeat (riflex_utils.py:85-89, Eq. 7). For HunyuanVideo (theta 256, d = 16) that
  frame is about 48 latent frames (8 s), which gives ``k = 4`` and ``N_k = 50`` (riflex_utils.py:72-75).
- For a video of ``L`` latent frames only that pair changes, to ``0.9 * 2 pi / L`` so that the whole
  video stays within 90% of one period (riflex_utils.py:47-48, Eq. 8); the spatial axes and the other
  temporal pairs keep their frequencies.
- Training-free use applies it only when ``L > N_k`` (hunyuanvideo.py:79-81): shorter videos are
  unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .rope import rope_tables

# The latent frame at which HunyuanVideo starts repeating, as the RIFLEx authors observed it
# (riflex_utils.py:73, "approximately 8s (N=48 in latent space)").
HUNYUAN_REPEAT_FRAME = 48


def periods(theta: float, dim: int) -> list[int]:
    """``N_j`` for the temporal pairs ``j = 1 .. dim/2``: frames per full turn, rounded (Eq. 4)."""
    return [round(2 * math.pi * theta ** (2 * (j - 1) / dim)) for j in range(1, dim // 2 + 1)]


def intrinsic_index(theta: float, dim: int, repeat_frame: int = HUNYUAN_REPEAT_FRAME) -> int:
    """The 1-based pair ``k`` whose period is closest to ``repeat_frame`` (Eq. 7; first on a tie)."""
    distances = [abs(n - repeat_frame) for n in periods(theta, dim)]
    return distances.index(min(distances)) + 1


def riflex_frequency(latent_frames: int) -> float:
    """The intrinsic pair's new frequency for a video of ``latent_frames``: 90% of one turn over it (Eq. 8)."""
    return 0.9 * 2 * math.pi / latent_frames


@dataclass(frozen=True)
class Riflex:
    """RIFLEx on a DiT's temporal axis. ``k`` is the 1-based temporal pair, None = the intrinsic one
    (:func:`intrinsic_index`; 4 for HunyuanVideo). The change applies to latent grids with more frames
    than that pair's period (50 latent frames = 197 video frames for HunyuanVideo)."""

    k: int | None = None

    def index(self, theta: float, dim: int) -> int:
        k = self.k if self.k is not None else intrinsic_index(theta, dim)
        if not 1 <= k <= dim // 2:
            raise ValueError(
                f"RIFLEx k must be a temporal RoPE pair from 1 to {dim // 2} (this model has {dim} temporal "
                f"dimensions), got {k}. Use 0 for the automatic choice ({intrinsic_index(theta, dim)})."
            )
        return k

    def applies(self, latent_frames: int, theta: float, dim: int) -> bool:
        """Whether a grid of ``latent_frames`` gets the change: only past the chosen pair's period."""
        return latent_frames > periods(theta, dim)[self.index(theta, dim) - 1]

    def tables(
        self, grid: tuple[int, int, int], dims: tuple[int, int, int], theta: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos, sin`` ``[t*h*w, sum(dims)/2]`` as :func:`.rope.rope_tables`, with column ``k - 1`` (the
        intrinsic temporal pair; the temporal pairs come first) turning at :func:`riflex_frequency`."""
        cos, sin = rope_tables(grid, dims, theta)
        if not self.applies(grid[0], theta, dims[0]):
            return cos, sin
        column = self.index(theta, dims[0]) - 1
        t = torch.arange(grid[0], dtype=torch.float32)
        angle = torch.outer(t, torch.tensor([riflex_frequency(grid[0])], dtype=torch.float32))  # t 1
        per_token = angle.repeat_interleave(grid[1] * grid[2], dim=0)[:, 0]  # tokens are (t, h, w)-major
        cos[:, column], sin[:, column] = per_token.cos(), per_token.sin()
        return cos, sin
