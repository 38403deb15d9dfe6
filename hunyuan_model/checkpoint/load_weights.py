"""Filling a model built on ``meta`` from a reader, one tensor at a time.

This is the loop under a loader: every key is read, converted to its storage (quantizable Linear
weights per :class:`~..quant.WeightStorage`, everything else dense in the base precision), moved
to its device, and the file pages behind it released once they are no longer referenced. At no
point does a second full copy of the model exist.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..quant import (
    WeightStorage,
    assign_tensor,
    keeps_base_precision,
    meta_tensors,
    require_scaled_mm,
    swap_linears,
)
from .errors import CheckpointError
from .reader import CheckpointReader

_SHOWN = 5


def check_keys(model: nn.Module, reader: CheckpointReader) -> None:
    """Raise :class:`CheckpointError` listing the first unexpected and missing keys when they differ."""
    expected, found = list(model.state_dict()), reader.keys()
    unexpected = [key for key in found if key not in set(expected)]
    missing = [key for key in expected if key not in set(found)]
    if unexpected or missing:
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:_SHOWN]}")
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {missing[:_SHOWN]}")
        raise CheckpointError(f"{reader.describe()} does not match the model's keys: {'; '.join(parts)}.")


def load_weights(
    model: nn.Module,
    reader: CheckpointReader,
    storage: WeightStorage | str,
    base_dtype: torch.dtype,
    device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Load every tensor of ``reader`` into ``model`` (built on ``meta``, Tencent key names).

    Quantizable Linear weights (:func:`~..quant.keeps_base_precision`) get their storage module;
    all else is assigned dense in ``base_dtype``. With ``device`` each tensor moves there as soon
    as it is converted (a CUDA load never holds the model in RAM); without it, as-stored tensors
    stay views of the memory-mapped file. ``progress(done, total)`` is called after each key (it
    may raise to cancel). Keys are checked first (:func:`check_keys`), and ``fp8_e4m3fn_fast``
    against the device (:func:`~..quant.require_scaled_mm`); afterwards nothing is left on ``meta``.
    """
    if WeightStorage(storage) is WeightStorage.FP8_E4M3FN_FAST:
        require_scaled_mm(device or "cpu")
    check_keys(model, reader)
    keys = reader.keys()
    for done, key in enumerate(keys, 1):
        stored = reader.load(key)
        if keeps_base_precision(key):
            result = stored.dense(base_dtype, device)
            assign_tensor(model, key, result)
        else:
            name = key.removesuffix(".weight")
            swap_linears(model, {name: stored}, storage, base_dtype)
            layer = model.get_submodule(name)
            if device is not None:
                _move_loaded(layer, device)
            result = layer.weight
        if not _shares_memory(result, stored.data):
            reader.release(key)
        if progress is not None:
            progress(done, len(keys))
    left = meta_tensors(model)
    if left:
        raise CheckpointError(f"{reader.describe()} left {len(left)} tensors unloaded, first: {left[:_SHOWN]}.")


def _move_loaded(module: nn.Module, device: torch.device | str) -> None:
    """Move a module's own loaded tensors; its bias may still be a ``meta`` placeholder (assigned later)."""
    for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if not tensor.is_meta:
            assign_tensor(module, name, tensor.to(device))


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.device == b.device and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
