"""3D rotary position embedding over the video tokens' (t, h, w) grid (spec section 1.5).

Each head's dimensions are split between the axes (16, 56, 56 for the released model); within an axis,
dimension pair ``(2i, 2i+1)`` rotates by ``pos * theta ** (-2i / d)``. Text tokens get no rotation.
The tables are built on the CPU in float32, as Tencent does, and then moved to the compute device.
"""

from __future__ import annotations

import torch

from .layers import TOKEN_CHUNK


def rope_tables(
    grid: tuple[int, int, int], dims: tuple[int, int, int], theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos, sin`` ``[t*h*w, sum(dims)/2]`` float32 for the token order of the patch embedding (t, h, w)."""
    positions = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in grid), indexing="ij")
    angles = []
    for pos, dim in zip(positions, dims):
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        angles.append(torch.outer(pos.reshape(-1), freqs))
    angle = torch.cat(angles, dim=1)
    return angle.cos(), angle.sin()


def rotate_video_tokens_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the leading ``len(cos)`` tokens of ``x`` ``[B, L, H, D]`` in place, chunk by chunk, in float32.

    With tables ``[N, D/2]``: ``out[2i] = x[2i] cos - x[2i+1] sin`` and ``out[2i+1] = x[2i+1] cos + x[2i] sin``,
    the same float32 operations as the reference's ``x * cos + rotate(x) * sin`` with repeated tables.
    The tokens after them (text) are left as they are.
    """
    for start in range(0, cos.shape[0], TOKEN_CHUNK):
        end = min(start + TOKEN_CHUNK, cos.shape[0])
        pairs = x[:, start:end].unflatten(-1, (-1, 2))  # view: b n h d/2 2
        even, odd = pairs.float().unbind(-1)
        c, s = cos[start:end, None], sin[start:end, None]  # n 1 d/2, broadcast over heads
        rotated_even, rotated_odd = even * c - odd * s, odd * c + even * s
        pairs[..., 0], pairs[..., 1] = rotated_even, rotated_odd
    return x


class RopeCache:
    """The tables of the latest few latent grids, per device: a sampler reuses one shape every step."""

    def __init__(self, dims: tuple[int, int, int], theta: float, size: int = 2) -> None:
        self.dims, self.theta, self.size = dims, theta, size
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (grid, str(device))
        if key not in self._tables:
            if len(self._tables) >= self.size:
                self._tables.pop(next(iter(self._tables)))
            self._tables[key] = tuple(t.to(device) for t in rope_tables(grid, self.dims, self.theta))
        return self._tables[key]
