"""FP8 weight conversion and the checks around it.

Semantics (Tencent's FP8 release, spec section 2.3; ComfyUI's ``scaled_fp8`` files are the same):
a stored FP8 weight with per-tensor ``scale`` means ``W = W8.to(dtype) * scale.to(dtype)`` in the
compute dtype ``dtype`` (the scale is rounded to it first, as Tencent's forward does). Without a
scale, ``W = W8.to(dtype)`` (kijai's plain-cast files).
"""

from __future__ import annotations

import torch

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
E4M3_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448
# A max-scaled FP8 tensor reaches +-448 by construction; real DiT weights cast without a scale sit
# orders of magnitude below. Anything whose largest magnitude is at least half the range was scaled.
_PRESCALED_THRESHOLD = E4M3_MAX / 2


def is_fp8(dtype: torch.dtype) -> bool:
    return dtype in FP8_DTYPES


def cast_to_fp8(weight: torch.Tensor) -> torch.Tensor:
    """Plain cast to float8_e4m3fn, clamped to its range (``fp8_e4m3fn`` storage)."""
    return _to_fp8(weight, None)


def quantize_fp8_scaled(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tencent's per-tensor recipe: ``scale = max|W| / 448``, ``W8 = (W / scale).to(e4m3fn)``.

    Returns ``(W8, scale)`` with a float32 scalar scale; an all-zero weight gets scale 1.
    """
    low, high = torch.aminmax(weight)
    amax = torch.maximum(-low, high).float()
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    return _to_fp8(weight, scale), scale


def _to_fp8(weight: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``clamp(W / scale)`` in float32, cast to e4m3fn, a slice at a time on the CPU.

    Slices keep the float32 temporaries in cache and small (a whole 13B model converts at load,
    one layer after another), rather than a full float32 copy of each layer.
    """
    out = torch.empty(weight.shape, dtype=torch.float8_e4m3fn, device=weight.device)
    flat, flat_out = weight.reshape(-1), out.view(-1)
    step = _CPU_SLICE if weight.device.type == "cpu" else flat.numel()
    for start in range(0, flat.numel(), step):
        part = flat[start : start + step].to(torch.float32, copy=True)
        if scale is not None:
            part = part.div_(scale)
        flat_out[start : start + step] = part.clamp_(-E4M3_MAX, E4M3_MAX)
    return out


_CPU_SLICE = 1 << 18


def fp8_dequantize(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """The dense weight in ``dtype`` for stored ``weight`` and optional per-tensor ``scale``."""
    dense = weight.to(dtype)
    return dense if scale is None else dense * scale.to(dtype)


def looks_prescaled(weight: torch.Tensor) -> bool:
    """Whether an FP8 weight was divided by a per-tensor scale it does not carry (needs a scale map).

    Tencent's ``*_fp8.pt`` tensors fill the whole e4m3 range (each reaches +-448); loading them
    without their ``*_fp8_map.pt`` gives noise. Plain-cast FP8 files hold the weights' true values.
    """
    return bool(weight.float().abs().amax() >= _PRESCALED_THRESHOLD)


def scaled_mm_unsupported_reason(device: torch.device | str) -> str | None:
    """Why ``torch._scaled_mm`` FP8 matmuls cannot run on ``device``, or None if they can.

    CUDA needs compute capability 8.9+ (Ada, Hopper and newer); the CPU build of torch runs them
    too (slowly; useful for tests). Other backends are not supported.
    """
    device = torch.device(device)
    if not hasattr(torch, "_scaled_mm"):
        return f"this torch ({torch.__version__}) has no torch._scaled_mm; FP8 matmuls need torch 2.4 or newer"
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        return f"FP8 matmuls (torch._scaled_mm) are only available on NVIDIA GPUs, not on {device.type}"
    if not torch.cuda.is_available():
        return "CUDA is not available in this torch build"
    if torch.version.hip is not None:
        return "FP8 matmuls are not supported on ROCm by this pack"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        name = torch.cuda.get_device_name(device)
        return (
            f"FP8 matmuls need an NVIDIA GPU of compute capability 8.9 or newer (RTX 40xx, L4/L40, H100); "
            f"{name} is {major}.{minor}. Use fp8_e4m3fn_scaled storage instead (same memory, upcast per layer)"
        )
    return None


def require_scaled_mm(device: torch.device | str) -> None:
    """Raise a ``RuntimeError`` with the reason when FP8 matmuls cannot run on ``device``."""
    reason = scaled_mm_unsupported_reason(device)
    if reason is not None:
        raise RuntimeError(f"Weight storage fp8_e4m3fn_fast is not available: {reason}.")
