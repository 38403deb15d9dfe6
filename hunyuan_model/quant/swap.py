"""Putting stored weights into a model built on ``meta``: Linear swaps and tensor assignment.

A loader builds the DiT on ``meta`` (no memory), swaps the quantizable ``nn.Linear`` children for
storage modules (:func:`swap_linears`), assigns every other tensor (:func:`assign_tensor`,
including the biases of swapped layers), then checks nothing is left on ``meta``
(:func:`meta_tensors`). Which Linears are quantizable is :func:`.policy.keeps_base_precision`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .fp8 import cast_to_fp8, is_fp8, quantize_fp8_scaled
from .ggml_types import FLOAT_TYPES
from .linear import CastLinear, GGUFLinear, ScaledMMLinear
from .policy import WeightStorage
from .stored import StoredWeight


def make_linear(stored: StoredWeight, storage: WeightStorage, base_dtype: torch.dtype) -> nn.Module:
    """A bias-less Linear-like module holding ``stored`` (an ``[out, in]`` weight) the way ``storage`` says.

    ``DEFAULT``: GGUF blocks -> :class:`GGUFLinear`, anything else dense (FP8 dequantized with its
    scale) -> ``nn.Linear`` in ``base_dtype``. ``AS_STORED``: GGUF blocks -> :class:`GGUFLinear`, FP8
    -> :class:`CastLinear` (scale kept), float -> ``nn.Linear`` in ``base_dtype``. The FP8 choices convert float weights (one layer at a time,
    so only one layer's temporaries exist at once) and keep FP8 weights as they are, scale
    included; ``FP8_E4M3FN_FAST`` makes a :class:`ScaledMMLinear` (re-scaling e5m2 weights to
    e4m3fn). GGUF weights with an FP8 choice are refused: they are quantized already.
    """
    storage = WeightStorage(storage)
    if len(stored.shape) != 2:
        raise ValueError(f"a Linear weight is 2-D, got shape {list(stored.shape)}")
    if stored.qtype is not None and stored.qtype not in FLOAT_TYPES:
        if storage not in (WeightStorage.AS_STORED, WeightStorage.DEFAULT):
            raise ValueError(
                f"weight storage {storage.value} would dequantize these {stored.qtype.name} GGUF weights and "
                "quantize them again, losing quality and saving nothing; choose as_stored for GGUF files."
            )
        return GGUFLinear.from_blocks(stored.data, stored.qtype, stored.shape)
    if storage is WeightStorage.DEFAULT:
        return _dense_linear(stored.dense(base_dtype))
    if storage is WeightStorage.NF4:
        raise ValueError("nf4 storage is applied after a default load (quant.nf4.use_nf4_linears), not per weight")
    if is_fp8(stored.data.dtype):
        return _from_fp8(stored, storage)
    weight = stored.dense(base_dtype) if stored.qtype is not None or stored.scale is not None else stored.data
    if storage is WeightStorage.AS_STORED:
        return _dense_linear(weight.to(base_dtype))
    if storage is WeightStorage.FP8_E4M3FN:
        return CastLinear.from_weight(cast_to_fp8(weight))
    weight8, scale = quantize_fp8_scaled(weight)
    if storage is WeightStorage.FP8_E4M3FN_SCALED:
        return CastLinear.from_weight(weight8, scale)
    return ScaledMMLinear.from_weight(weight8, scale)


def _from_fp8(stored: StoredWeight, storage: WeightStorage) -> nn.Module:
    if storage is not WeightStorage.FP8_E4M3FN_FAST:
        return CastLinear.from_weight(stored.data, stored.scale)
    if stored.data.dtype == torch.float8_e4m3fn:
        return ScaledMMLinear.from_weight(stored.data, stored.scale)
    return ScaledMMLinear.from_weight(*quantize_fp8_scaled(stored.dense(torch.float32)))


def _dense_linear(weight: torch.Tensor) -> nn.Linear:
    out_features, in_features = weight.shape
    module = nn.Linear(in_features, out_features, bias=False, device="meta")
    module.weight = nn.Parameter(weight, requires_grad=False)
    return module


def swap_linears(
    root: nn.Module, weights: Mapping[str, StoredWeight], storage: WeightStorage, base_dtype: torch.dtype
) -> None:
    """Replace each ``nn.Linear`` named in ``weights`` (qualified module name -> its stored weight).

    The new module takes over the old one's ``bias`` Parameter (a ``meta`` placeholder when the model
    was built on meta: assign it afterwards with :func:`assign_tensor` under ``<name>.bias``).
    """
    for name, stored in weights.items():
        old = root.get_submodule(name)
        if not isinstance(old, nn.Linear):
            raise TypeError(f"{name} is a {type(old).__name__}, not an nn.Linear; cannot give it stored weights")
        if tuple(stored.shape) != (old.out_features, old.in_features):
            raise ValueError(
                f"{name}.weight: the file has shape {list(stored.shape)}, the model expects "
                f"{[old.out_features, old.in_features]}"
            )
        new = make_linear(stored, storage, base_dtype)
        new.bias = old.bias
        parent, _, child = name.rpartition(".")
        setattr(root.get_submodule(parent) if parent else root, child, new)


def assign_tensor(root: nn.Module, key: str, tensor: torch.Tensor) -> None:
    """Set parameter or buffer ``key`` of ``root`` to ``tensor`` itself (no copy; replaces ``meta``).

    Parameters become frozen Parameters; the shape must match the existing entry.
    """
    module_name, _, attr = key.rpartition(".")
    module = root.get_submodule(module_name) if module_name else root
    current = getattr(module, attr, None)
    if not isinstance(current, torch.Tensor):
        raise KeyError(f"{key}: the model has no parameter or buffer of that name")
    if current.shape != tensor.shape:
        raise ValueError(f"{key}: the file has shape {list(tensor.shape)}, the model expects {list(current.shape)}")
    if isinstance(current, nn.Parameter):
        setattr(module, attr, nn.Parameter(tensor, requires_grad=False))
    else:
        module._buffers[attr] = tensor


def meta_tensors(root: nn.Module) -> list[str]:
    """Names of the parameters and buffers still on ``meta`` (weights the checkpoint did not provide)."""
    named = [*root.named_parameters(), *root.named_buffers()]
    return [name for name, tensor in named if tensor.is_meta]
