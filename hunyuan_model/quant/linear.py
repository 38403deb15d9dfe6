"""Drop-in replacements for ``nn.Linear`` that keep their weight in stored form.

Each has ``forward(x)`` like ``nn.Linear`` and the same parameter names (``weight``, ``bias``), so
``load_state_dict`` and block swapping see ordinary modules. The stored weight (FP8 or GGUF
bytes) is a frozen Parameter and the FP8 scale a buffer: ``module.to(device)`` moves the stored
form, never a dequantized copy. Never call ``module.to(dtype)`` on them: it would upcast FP8
weights in place (GGUF bytes are safe). The bias is kept in the base precision. All three can be
built on ``meta`` and filled by ``load_state_dict(..., assign=True)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dequant import dequantize
from .fp8 import E4M3_MAX, fp8_dequantize
from .ggml_types import GGMLType, row_bytes


def _frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor, requires_grad=False)


def _bias(out_features: int, bias: bool, dtype: torch.dtype | None, device) -> nn.Parameter | None:
    return _frozen(torch.empty(out_features, dtype=dtype, device=device)) if bias else None


def _bias_for(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    return None if module.bias is None else module.bias.to(x.dtype)


class CastLinear(nn.Module):
    """A Linear whose weight stays in a narrower float dtype (FP8, or fp16 under bf16 compute).

    Per call the weight is upcast to the input's dtype and multiplied by its per-tensor ``scale``
    when it has one (Tencent's FP8 forward: ``W8.to(dtype) * scale.to(dtype)``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight_dtype: torch.dtype = torch.float8_e4m3fn,
        scaled: bool = False,
        bias_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _frozen(torch.empty(out_features, in_features, dtype=weight_dtype, device=device))
        self.bias = _bias(out_features, bias, bias_dtype, device)
        self.register_buffer("scale", torch.ones((), device=device) if scaled else None)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, scale: torch.Tensor | None = None) -> CastLinear:
        """A module around ``weight`` (not copied) with an optional scale; bias None, assign it later."""
        module = cls(*reversed(weight.shape), bias=False, weight_dtype=weight.dtype, scaled=False, device="meta")
        module.weight = _frozen(weight)
        module.scale = None if scale is None else scale.reshape(()).float()
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fp8_dequantize(self.weight, self.scale, x.dtype), _bias_for(self, x))

    def extra_repr(self) -> str:
        scaled = ", scaled" if self.scale is not None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, weight={self.weight.dtype}{scaled}"


class ScaledMMLinear(nn.Module):
    """A Linear that multiplies in FP8 with ``torch._scaled_mm`` (the ``fp8_e4m3fn_fast`` storage).

    The weight is float8_e4m3fn with a float32 per-tensor ``scale``; activations are quantized per
    call with their own per-tensor scale ``max|x| / 448``, so nothing overflows. Feature counts
    must be multiples of 16 (cuBLAS FP8 needs it; the CPU does not, but the rule is kept everywhere
    so a layout that fails on the GPU fails in tests too). Check the device with
    :func:`~.fp8.require_scaled_mm` before choosing this module.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        bias_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if in_features % 16 or out_features % 16:
            raise ValueError(f"FP8 matmuls need feature counts divisible by 16, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = _frozen(torch.empty(out_features, in_features, dtype=torch.float8_e4m3fn, device=device))
        self.bias = _bias(out_features, bias, bias_dtype, device)
        self.register_buffer("scale", torch.ones((), device=device))

    @classmethod
    def from_weight(cls, weight: torch.Tensor, scale: torch.Tensor | None = None) -> ScaledMMLinear:
        if weight.dtype != torch.float8_e4m3fn:
            raise ValueError(f"torch._scaled_mm weights must be float8_e4m3fn, got {weight.dtype}")
        module = cls(*reversed(weight.shape), bias=False, device="meta")
        module.weight = _frozen(weight)
        module.scale = torch.ones((), device=weight.device) if scale is None else scale.reshape(()).float()
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        x_scale = (rows.abs().amax().float() / E4M3_MAX).clamp(min=torch.finfo(torch.float32).tiny)
        # The factor x is multiplied by is rounded to x's dtype (up to 0.2% off in bf16); the matmul undoes
        # that rounded factor, not x_scale, or every output would carry the rounding as a gain error.
        inverse = (1 / x_scale).clamp(max=torch.finfo(rows.dtype).max).to(rows.dtype)
        x8 = (rows * inverse).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
        bias = _bias_for(self, x)
        # cuBLAS takes a fused bias only with 16-bit outputs.
        fused = bias if x.dtype in (torch.bfloat16, torch.float16) else None
        out = torch._scaled_mm(
            x8, self.weight.t(), scale_a=1 / inverse.float(), scale_b=self.scale.float(), bias=fused, out_dtype=x.dtype
        )
        if bias is not None and fused is None:
            out = out + bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, weight=float8_e4m3fn scaled, fp8 matmul"
        )


class GGUFLinear(nn.Module):
    """A Linear whose weight stays as GGUF blocks (``[out, bytes per row]`` uint8), dequantized per call.

    Dequantization runs in torch on the weight's device, in float32, then casts to the input's dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        qtype: GGMLType,
        bias: bool = True,
        *,
        bias_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.qtype = in_features, out_features, GGMLType(qtype)
        self.weight = _frozen(
            torch.empty(out_features, row_bytes(self.qtype, in_features), dtype=torch.uint8, device=device)
        )
        self.bias = _bias(out_features, bias, bias_dtype, device)

    @classmethod
    def from_blocks(cls, blocks: torch.Tensor, qtype: GGMLType, shape: tuple[int, int]) -> GGUFLinear:
        """A module around the raw ``blocks`` (not copied) of a ``[out, in]`` weight; bias None."""
        out_features, in_features = shape
        module = cls(in_features, out_features, qtype, bias=False, device="meta")
        module.weight = _frozen(blocks.reshape(module.weight.shape))
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = dequantize(self.weight, self.qtype, (self.out_features, self.in_features), x.dtype)
        return F.linear(x, weight, _bias_for(self, x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, weight=GGUF {self.qtype.name}"
