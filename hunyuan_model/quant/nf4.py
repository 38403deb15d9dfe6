"""bitsandbytes NF4 storage (the LLM's ``nf4`` option): 4-bit Linear weights on CUDA, about 5 GB for the 8B LLM.

An optional storage beside the FP8 family (:mod:`.linear`): bitsandbytes is imported lazily and
quantizes a weight when it first moves to the GPU, so the model is loaded dense first
(:attr:`~.policy.WeightStorage.DEFAULT`) and :func:`use_nf4_linears` converts layer by layer.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


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
