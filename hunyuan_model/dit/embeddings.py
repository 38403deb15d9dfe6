"""Input embeddings: video patches, timesteps, the embedded guidance scale and text vectors."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FREQUENCY_DIM = 256


def timestep_embedding(t: torch.Tensor, dim: int = FREQUENCY_DIM, max_period: float = 10000.0) -> torch.Tensor:
    """``[cos, sin]`` sinusoids ``[B, dim]`` in float32 of ``t`` ``[B]``, used unscaled (t in 0..1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def embedded_guidance(guidance: float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """The distilled guidance input ``[B]`` as Tencent and diffusers compute it: ``bf16(g) * 1000`` in bf16.

    The product is rounded to bfloat16, so 6.0 becomes 6016.0 (5.0 -> 4992, 7.0 -> 7008); the model was
    trained on these values (spec section 6.2).
    """
    g = torch.as_tensor(guidance, dtype=torch.float32, device=device).reshape(-1).expand(batch)
    return (g.to(torch.bfloat16) * 1000.0).float()


class PatchEmbed(nn.Module):
    """Conv3d with kernel = stride = patch, flattened t-major, then h, then w: ``b c t h w -> b (t h w) c``."""

    def __init__(self, patch_size: tuple[int, int, int], in_channels: int, hidden: int, **factory) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_channels, hidden, kernel_size=patch_size, stride=patch_size, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Sinusoids of a scalar per sample through ``Linear, SiLU, Linear`` (keys ``mlp.0``, ``mlp.2``)."""

    def __init__(self, hidden: int, **factory) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(FREQUENCY_DIM, hidden, **factory), nn.SiLU(), nn.Linear(hidden, hidden, **factory)
        )

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.mlp(timestep_embedding(t).to(dtype))


class MLPEmbedder(nn.Module):
    """``vector_in``: CLIP's pooled vector through ``in_layer, SiLU, out_layer``."""

    def __init__(self, in_dim: int, hidden: int, **factory) -> None:
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden, **factory)
        self.out_layer = nn.Linear(hidden, hidden, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(F.silu(self.in_layer(x)))


class TextProjection(nn.Module):
    """The refiner's ``c_embedder``: ``linear_1, SiLU, linear_2``."""

    def __init__(self, in_dim: int, hidden: int, **factory) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, hidden, **factory)
        self.linear_2 = nn.Linear(hidden, hidden, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))
