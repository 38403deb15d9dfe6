"""Scaled dot-product attention behind one function, with interchangeable kernels.

Backends: ``sdpa`` (PyTorch's, CPU and GPU, the default), ``flash_attn`` (FlashAttention 2, its varlen
kernel for padded batches), ``sageattention`` (8-bit SageAttention) and ``auto`` (the fastest one that is
installed and can run the given tensors). Asking for a backend that is not installed raises an
``ImportError`` naming the pip package; a backend that cannot run the tensors at hand (CPU tensors,
float32) falls back to ``sdpa`` with a logged warning, never silently.

The kernels' packages are imported on first use, never at import time.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger("HunyuanVideo.attention")

ATTENTION_BACKENDS = ("sdpa", "flash_attn", "sageattention", "auto")
# What ``auto`` tries, fastest first, before sdpa.
_PREFERENCE = ("sageattention", "flash_attn")
_PIP_PACKAGE = {"flash_attn": "flash-attn", "sageattention": "sageattention"}
_logged: set[str] = set()


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    token_mask: torch.Tensor | None = None,
    backend: str = "sdpa",
) -> torch.Tensor:
    """Self-attention over ``q, k, v`` ``[B, L, H, D]`` with softmax scale ``1/sqrt(D)``; returns ``[B, L, H*D]``.

    ``token_mask`` ``[B, L]`` (True = real token) removes padding tokens as keys. The outputs at
    padding positions are finite but unspecified (backends differ there), so callers must not let
    them reach real tokens other than through this masking.
    """
    name = _runnable_backend(backend, q)
    if name == "flash_attn":
        return _flash(q, k, v, token_mask)
    if name == "sageattention":
        return _sage(q, k, v, token_mask)
    return _sdpa(q, k, v, token_mask)


def installed_backends() -> list[str]:
    """Backends whose packages are importable here (``sdpa`` always is)."""
    return [name for name in ("sdpa", "flash_attn", "sageattention") if _installed(name)]


def check_backend(backend: str) -> str:
    """``backend`` if it is known and installed; raises a ``ValueError`` / ``ImportError`` that says what to do."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}.")
    if backend in _PIP_PACKAGE and not _installed(backend):
        others = ", ".join(b for b in ATTENTION_BACKENDS if b != backend and (b not in _PIP_PACKAGE or _installed(b)))
        raise ImportError(
            f"attention backend {backend!r} needs the Python package '{_PIP_PACKAGE[backend]}', which is not installed "
            f"(pip install {_PIP_PACKAGE[backend]}). Installed alternatives: {others}."
        )
    return backend


def _installed(name: str) -> bool:
    return name == "sdpa" or importlib.util.find_spec(name) is not None


def _unsupported_reason(name: str, q: torch.Tensor) -> str | None:
    """Why kernel ``name`` cannot run these tensors, or None if it can."""
    if name == "sdpa":
        return None
    if not _installed(name):
        return f"{name} is not installed (pip install {_PIP_PACKAGE[name]})"
    if q.device.type != "cuda":
        return f"{name} runs on CUDA only and the tensors are on {q.device.type}"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"{name} needs float16 or bfloat16 tensors, got {q.dtype}"
    if torch.version.hip is not None:
        return "sageattention runs on NVIDIA GPUs only" if name == "sageattention" else None
    major, minor = _capability(q.device.index)
    if major < 8:
        # flash-attn 2 and SageAttention raise on these (Turing and older) rather than fall back.
        return (
            f"{name} needs an NVIDIA GPU of compute capability 8.0 or newer (RTX 30xx, A100 and later); "
            f"this one is {major}.{minor}"
        )
    return None


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def _runnable_backend(backend: str, q: torch.Tensor) -> str:
    if backend == "auto":
        return _auto_backend(q)
    reason = _unsupported_reason(check_backend(backend), q)
    if reason is None:
        return backend
    _log_once(log.warning, f"attention backend {backend!r} falls back to sdpa: {reason}.")
    return "sdpa"


def _auto_backend(q: torch.Tensor) -> str:
    reasons = []
    for name in _PREFERENCE:
        reason = _unsupported_reason(name, q)
        if reason is None:
            break
        reasons.append(reason)
    else:
        name = "sdpa"
    if reasons:
        _log_once(log.info, f"attention 'auto' uses {name}: {'; '.join(reasons)}.")
    return name


def _log_once(emit: Callable[[str], None], message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        emit(message)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    mask = None if token_mask is None else token_mask[:, None, None, :]  # b 1 1 l: mask keys only
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).flatten(2)


def _flash_kernels() -> tuple[Callable, Callable]:
    flash_attn = importlib.import_module("flash_attn")
    return flash_attn.flash_attn_func, flash_attn.flash_attn_varlen_func


def _sage_kernel() -> Callable:
    return importlib.import_module("sageattention").sageattn


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    dense, varlen = _flash_kernels()
    if token_mask is None:
        return dense(q, k, v).flatten(2)
    # Pack the real tokens of all samples into one ragged sequence; padding never enters the kernel.
    b, length, heads, dim = q.shape
    index = token_mask.reshape(-1).nonzero().squeeze(1)
    lengths = token_mask.sum(1, dtype=torch.int32)
    cu_seqlens = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
    longest = int(lengths.max())
    packed = [t.reshape(b * length, heads, dim).index_select(0, index) for t in (q, k, v)]
    out = varlen(*packed, cu_seqlens, cu_seqlens, longest, longest)
    return q.new_zeros(b * length, heads, dim).index_copy_(0, index, out).view(b, length, heads * dim)


def _sage(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    kernel = _sage_kernel()
    if token_mask is None:
        return kernel(q, k, v, tensor_layout="NHD", is_causal=False).flatten(2)
    # SageAttention takes no mask: run each sample on its real tokens alone.
    out = q.new_zeros(q.shape)
    for i, real in enumerate(token_mask):
        sel = real.nonzero().squeeze(1)
        part = kernel(*(t[i : i + 1, sel] for t in (q, k, v)), tensor_layout="NHD", is_causal=False)
        out[i].index_copy_(0, sel, part[0])
    return out.flatten(2)
