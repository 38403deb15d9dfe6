"""Norms, modulation, MLPs and the final layer shared by the DiT's blocks.

Precision follows Tencent's reference, which runs bf16 weights under CUDA autocast: LayerNorm and the
``x * (1 + scale) + shift`` modulation are computed in float32 and rounded once, when the result
enters the next Linear; RMSNorm normalises in float32 and multiplies its weight in the compute dtype;
activations, gates and the residual stream stay in the compute dtype (spec section 7, item 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6
# Tokens per step where float32 temporaries of [B, L, H, D] tensors are needed: bounds them to a few
# hundred MB at 720p (119k tokens) instead of several GB.
TOKEN_CHUNK = 8192


def norm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``LayerNorm(x) * (1 + scale) + shift`` in float32, returned in ``x``'s dtype.

    ``x`` is ``[B, L, C]``, ``shift``/``scale`` ``[B, C]``. ``1 + scale`` stays in the modulation's dtype
    as in the reference.
    """
    h = F.layer_norm(x.float(), x.shape[-1:], eps=EPS)
    h.mul_(1 + scale.unsqueeze(1)).add_(shift.unsqueeze(1))
    return h.to(x.dtype)


class AffineLayerNorm(nn.LayerNorm):
    """The token refiner's LayerNorm (with weight and bias), computed in float32 like under autocast."""

    def __init__(self, dim: int, **factory) -> None:
        super().__init__(dim, eps=EPS, elementwise_affine=True, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), x.shape[-1:], self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """Per-head query/key norm: normalise in float32, cast back, then multiply by the weight."""

    def __init__(self, dim: int, **factory) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, **factory))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, H, D]``, normalised over D a chunk of tokens at a time into a new tensor."""
        if x.shape[1] <= TOKEN_CHUNK:
            return self._norm(x)
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        for start in range(0, x.shape[1], TOKEN_CHUNK):
            out[:, start : start + TOKEN_CHUNK] = self._norm(x[:, start : start + TOKEN_CHUNK])
        return out

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype) * self.weight.to(x.dtype)


class ModulateDiT(nn.Module):
    """``linear(SiLU(vec))`` chunked into ``factor`` modulation vectors ``[B, C]`` (shift, scale, gate, ...)."""

    def __init__(self, hidden: int, factor: int, **factory) -> None:
        super().__init__()
        self.factor = factor
        self.linear = nn.Linear(hidden, factor * hidden, **factory)

    def forward(self, vec: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(F.silu(vec)).chunk(self.factor, dim=-1)


class MLP(nn.Module):
    """``fc2(act(fc1(x)))``: GELU(tanh) in the DiT blocks, SiLU in the token refiner."""

    def __init__(self, hidden: int, mlp_hidden: int, activation: str, **factory) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_hidden, **factory)
        self.fc2 = nn.Linear(mlp_hidden, hidden, **factory)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        # In place: the hidden activations are the block's largest tensor.
        h = torch.ops.aten.gelu_(h, approximate="tanh") if self.activation == "gelu_tanh" else F.silu(h, inplace=True)
        return self.fc2(h)


class FinalLayer(nn.Module):
    """Modulated LayerNorm then a Linear to one patch's output channels. Tencent chunks ``shift, scale``."""

    def __init__(self, hidden: int, patch_features: int, **factory) -> None:
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, **factory))
        self.linear = nn.Linear(hidden, patch_features, **factory)

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=-1)
        return self.linear(norm_modulate(x, shift, scale))
