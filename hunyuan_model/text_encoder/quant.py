"""Smaller weight storage for the 8B LLM: FP8 with a per-tensor scale (8 GB instead of 16), or
bitsandbytes NF4 on CUDA. Only the decoder's Linear layers shrink; embeddings and norms stay as is.

FP8 here is storage only: each Linear upcasts its weight to the activation dtype in ``forward``
(``W = W8 * scale``), the same arithmetic as ComfyUI's ``scaled_fp8`` files, whose weights and
``scale_weight`` tensors load into :class:`Fp8Linear` unchanged.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448


class Fp8Linear(nn.Module):
    """A Linear whose weight is stored in float8_e4m3fn with one float32 scale: ``W = weight * scale``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=FP8), requires_grad=False)
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float32), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.scale.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W8, scale)`` with ``scale = max|W| / 448`` so the largest weight lands on FP8's largest value."""
    amax = weight.detach().abs().max().float()
    scale = torch.clamp(amax / FP8_MAX, min=torch.finfo(torch.float32).tiny)
    return (weight.float() / scale).to(FP8), scale


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (weight.float() * scale.float()).to(dtype)


def use_fp8_linears(model: nn.Module, names: set[str]) -> None:
    """Replace the Linear submodules named in ``names`` (e.g. ``layers.0.mlp.up_proj``) by empty
    :class:`Fp8Linear` of the same size, to be filled by ``load_state_dict(assign=True)``."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, child)
        with torch.device("meta"):
            new = Fp8Linear(old.in_features, old.out_features, bias=old.bias is not None)
        setattr(parent, child, new)


def require_nf4(device: torch.device):
    """bitsandbytes, after checking that NF4 can run on ``device`` (CUDA only); a clear error if not."""
    if device.type != "cuda" or not torch.cuda.is_available():
        found = f"the device is {device}" if device.type != "cuda" else "no CUDA GPU is available"
        raise RuntimeError(
            f"4-bit (nf4) text encoding needs bitsandbytes on an NVIDIA GPU, but {found}. "
            "Choose fp8_e4m3fn instead: it runs everywhere and halves the LLM's memory."
        )
    try:
        import bitsandbytes
    except ImportError as error:
        raise RuntimeError(
            "4-bit (nf4) text encoding needs the bitsandbytes package, which is not installed "
            f"({error}). Install it with `pip install bitsandbytes`, or choose fp8_e4m3fn."
        ) from error
    version = getattr(bitsandbytes, "__version__", "0")
    if _release(version) < _NF4_MIN_BITSANDBYTES:
        # Older releases quantize a 4-bit weight again each time it returns to the GPU: the encoder is
        # offloaded after each prompt, so the second prompt would fail.
        raise RuntimeError(
            f"4-bit (nf4) text encoding needs bitsandbytes 0.43 or newer, this is {version}. Upgrade it with "
            "`pip install -U bitsandbytes`, or choose fp8_e4m3fn."
        )
    return bitsandbytes


_NF4_MIN_BITSANDBYTES = (0, 43)


def _release(version: str) -> tuple[int, ...]:
    """``"0.45.1.dev0"`` -> ``(0, 45, 1)``: the leading numeric parts of a version string."""
    parts = []
    for part in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        parts.append(int(digits))
        if digits != part:
            break
    return tuple(parts)


def use_nf4_linears(model: nn.Module, names: set[str], compute_dtype: torch.dtype, device: torch.device) -> None:
    """Replace the named Linear layers by bitsandbytes NF4 layers on ``device`` (CUDA only).

    bitsandbytes quantizes a weight when it first moves to the GPU, so the model is loaded in
    ``compute_dtype`` and each layer is converted and moved here.
    """
    bnb = require_nf4(device)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old = getattr(parent, child)
        new = bnb.nn.Linear4bit(
            old.in_features, old.out_features, bias=old.bias is not None, compute_dtype=compute_dtype, quant_type="nf4"
        )
        new.weight = bnb.nn.Params4bit(old.weight.data, requires_grad=False, quant_type="nf4")
        if old.bias is not None:
            new.bias = nn.Parameter(old.bias.data, requires_grad=False)
        setattr(parent, child, new.to(device))
