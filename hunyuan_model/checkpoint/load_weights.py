"""Filling a model built on ``meta`` from a reader or a state dict, one tensor at a time.

This is the one loading loop of the pack, for every model (DiT, LLM, CLIP, VAE): every key is
read, converted to its storage (quantizable Linear weights per :class:`~..quant.WeightStorage`,
everything else dense in the model's own dtype), moved to its device, and the file pages behind it released once they are no
longer referenced. At no point does a second full copy of the model exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
from ..quant.ggml_types import QUANTIZED_NAMES
from .errors import CheckpointError
from .reader import CheckpointReader, StateDictReader

_SHOWN = 5


def is_quantizable(key: str) -> bool:
    """The DiT's rule: a block Linear weight (:func:`~..quant.keeps_base_precision`)."""
    return not keeps_base_precision(key)


def check_shapes(expected: Mapping[str, Any], found: Mapping[str, Any], source: str = "the state dict") -> None:
    """Raise :class:`CheckpointError` unless ``found`` has exactly the keys of ``expected``, shapes included.

    Both map keys to tensors (real or ``meta``), shapes or :class:`~.reader.TensorInfo`. The
    message names ``source`` and lists the first unexpected, missing and mis-shaped keys.
    """
    want, have = _shapes(expected), _shapes(found)
    unexpected = [key for key in have if key not in want]
    missing = [key for key in want if key not in have]
    mis_shaped = [key for key in have if key in want and have[key] != want[key]]
    if not (unexpected or missing or mis_shaped):
        return
    parts = []
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:_SHOWN]}")
    if missing:
        parts.append(f"{len(missing)} missing keys, first: {missing[:_SHOWN]}")
    if mis_shaped:
        shown = "; ".join(f"{k} is {list(have[k])}, expected {list(want[k])}" for k in mis_shaped[:_SHOWN])
        parts.append(f"{len(mis_shaped)} keys with the wrong shape: {shown}")
    raise CheckpointError(
        f"{source} does not fit the model ({len(want)} tensors expected, {len(have)} found): {'; '.join(parts)}."
    )


def _shapes(mapping: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(int(d) for d in (v.shape if hasattr(v, "shape") else v)) for key, v in mapping.items()}


def refuse_requantizing(
    reader: CheckpointReader, storage: WeightStorage | str, linear_weight: Callable[[str], bool] = is_quantizable
) -> None:
    """Raise :class:`CheckpointError` when ``storage`` would quantize GGUF-quantized Linear weights again.

    Only the storages that keep the file's form (``as_stored``, ``default``) take GGUF blocks: any
    other would dequantize and quantize them again, losing quality and saving nothing.
    """
    storage = WeightStorage(storage)
    if storage in (WeightStorage.AS_STORED, WeightStorage.DEFAULT):
        return
    infos = reader.infos()
    quantized = sorted({infos[key].storage for key in infos if linear_weight(key)} & QUANTIZED_NAMES)
    if quantized:
        raise CheckpointError(
            f"{reader.describe()} is quantized ({', '.join(quantized)}); weight storage {storage.value} would "
            "dequantize and quantize it again, losing quality and saving nothing. Keep GGUF files as stored "
            "(as_stored for the transformer, default for the LLM)."
        )


def load_weights(
    model: nn.Module,
    source: CheckpointReader | Mapping[str, torch.Tensor],
    storage: WeightStorage | str = WeightStorage.AS_STORED,
    device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
    linear_weight: Callable[[str], bool] = is_quantizable,
) -> nn.Module:
    """Load every tensor of ``source`` (a reader or a state dict, Tencent keys) into ``model``; returns it.

    ``model`` is typically built on ``meta`` in its base precision: that dtype is what every
    tensor other than a quantizable Linear weight is cast to, and what float Linear weights stored
    ``as_stored`` keep. ``linear_weight(key)`` says which keys are quantizable Linear weights (the
    DiT's rule, :func:`~..quant.keeps_base_precision`, by default; the LLM's decoder Linears; none
    for CLIP and the VAE): they get the storage module ``storage`` asks for. With ``device`` each
    tensor moves there as soon as it is converted (a CUDA load never holds the model in RAM); without it, tensors already in the right
    form stay views of the memory-mapped file (or of the state dict: no copy). ``progress(done,
    total)`` is called after each key (it may raise to cancel). Keys and shapes are checked before
    anything is read (:func:`check_shapes`), ``fp8_e4m3fn_fast`` against the device
    (:func:`~..quant.require_scaled_mm`); afterwards nothing is left on ``meta``.
    """
    reader = source if isinstance(source, CheckpointReader) else StateDictReader(source)
    refuse_requantizing(reader, storage, linear_weight)
    if WeightStorage(storage) is WeightStorage.FP8_E4M3FN_FAST:
        require_scaled_mm(device or "cpu")
    placeholders = model.state_dict(keep_vars=True)
    check_shapes(placeholders, reader.infos(), reader.describe())
    keys = reader.keys()
    for done, key in enumerate(keys, 1):
        stored = reader.load(key)
        base_dtype = placeholders[key].dtype
        if not linear_weight(key):
            assign_tensor(model, key, stored.dense(base_dtype, device))
        else:
            name = key.removesuffix(".weight")
            swap_linears(model, {name: stored}, storage, base_dtype)
            if device is not None:
                _move_loaded(model.get_submodule(name), device)
        # Pages of a file view the model keeps are only unmapped: touching them maps them back.
        reader.release(key)
        if progress is not None:
            progress(done, len(keys))
    left = meta_tensors(model)
    if left:
        raise CheckpointError(f"{reader.describe()} left {len(left)} tensors unloaded, first: {left[:_SHOWN]}.")
    return model


def _move_loaded(module: nn.Module, device: torch.device | str) -> None:
    """Move a module's own loaded tensors; its bias may still be a ``meta`` placeholder (assigned later)."""
    for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
        if not tensor.is_meta:
            assign_tensor(module, name, tensor.to(device))
