"""``txt_in``: Tencent's SingleTokenRefiner, which turns LLM hidden states into DiT text tokens.

A conditioning vector (timestep embedding plus the projected masked mean of the raw LLM states) gates
two self-attention + SiLU-MLP blocks over the projected text tokens (spec section 1.3).
"""

from __future__ import annotations

import torch
from torch import nn

from ..attention import attention
from .blocks import AttentionSpec, split_heads
from .embeddings import TextProjection, TimestepEmbedder
from .layers import MLP, AffineLayerNorm


class IndividualTokenRefinerBlock(nn.Module):
    """Pre-norm self-attention and MLP, each scaled by a gate from the conditioning vector (no shift/scale)."""

    def __init__(self, hidden: int, heads: int, **factory) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = AffineLayerNorm(hidden, **factory)
        self.self_attn_qkv = nn.Linear(hidden, 3 * hidden, **factory)
        self.self_attn_proj = nn.Linear(hidden, hidden, **factory)
        self.norm2 = AffineLayerNorm(hidden, **factory)
        self.mlp = MLP(hidden, 4 * hidden, "silu", **factory)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, **factory))

    def forward(self, x: torch.Tensor, c: torch.Tensor, attn: AttentionSpec) -> torch.Tensor:
        gate_attn, gate_mlp = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        q, k, v = split_heads(self.self_attn_qkv(self.norm1(x)), self.heads)
        x = x + self.self_attn_proj(attention(q, k, v, attn.token_mask, attn.backend)) * gate_attn
        return x + self.mlp(self.norm2(x)) * gate_mlp


class IndividualTokenRefiner(nn.Module):
    def __init__(self, hidden: int, heads: int, depth: int, **factory) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(IndividualTokenRefinerBlock(hidden, heads, **factory) for _ in range(depth))


class SingleTokenRefiner(nn.Module):
    """``[B, L, D_llm]`` LLM states -> ``[B, L, C]`` text tokens in the compute dtype."""

    def __init__(self, text_dim: int, hidden: int, heads: int, depth: int, **factory) -> None:
        super().__init__()
        self.input_embedder = nn.Linear(text_dim, hidden, **factory)
        self.t_embedder = TimestepEmbedder(hidden, **factory)
        self.c_embedder = TextProjection(text_dim, hidden, **factory)
        self.individual_token_refiner = IndividualTokenRefiner(hidden, heads, depth, **factory)

    def forward(
        self, text_states: torch.Tensor, t: torch.Tensor, attn: AttentionSpec, dtype: torch.dtype
    ) -> torch.Tensor:
        c = self.t_embedder(t, dtype) + self.c_embedder(_masked_mean(text_states, attn.token_mask).to(dtype))
        x = self.input_embedder(text_states.to(dtype))
        for block in self.individual_token_refiner.blocks:
            x = block(x, c, attn)
        return x


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real tokens, in float32 (Tencent's mask is float, which promotes the sum)."""
    if mask is None:
        return x.float().mean(dim=1)
    weights = mask.float().unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1)
