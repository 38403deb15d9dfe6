"""Applying LoRAs to a loaded DiT without changing it: a new model that shares the base weights.

**Design.** :func:`apply_loras` never writes a base tensor. It returns a new
:class:`~..dit.HunyuanVideoTransformer` whose module tree is a copy of the base's modules (new module
and Parameter objects, the same tensors: no weight memory) and records the base and the whole LoRA
stack on it. Chaining rebuilds from that base with the longer stack, so a change of strength or the
removal of a LoRA (ComfyUI re-running a node, or a graph without it) is simply another tree over the
untouched base: bit-exact by construction, nothing unmerged, nothing reloaded. New Parameter objects
matter because ``module.to(device)`` replaces ``param.data``: the base and the LoRA model move
between devices independently.

**The numerical rule, per weight storage** (the only place it is written; tests/test_lora_apply.py
checks each line). With ``s = strength * block factor * alpha / rank`` per LoRA module and
``delta W = sum over LoRAs of s * up @ down`` (all in float32, rows of split parts placed):

- bf16 / fp32 ``nn.Linear``, mode ``merge``: ``W' = dtype(float32(W) + delta W)``, rounded once, in
  a new tensor for the changed layers only (memory: one copy of each changed weight). No per-step
  cost. Mode ``auto`` merges when those copies stay within :data:`MERGE_BUDGET` of the model's weight
  bytes (a LoRA on a few layers) and goes on the fly otherwise: a LoRA on every block of a 26 GB bf16
  model would need 26 GB more RAM merged, and about 3% more time per step at rank 64 on the fly.
- FP8 (``CastLinear``, plain or scaled), ``fp8_e4m3fn_fast`` (``ScaledMMLinear``), GGUF
  (``GGUFLinear``), and float layers in mode ``on_the_fly``: the stored weight stays as it is and the
  layer's output gets ``(x @ D^T) @ U^T``, where ``D`` stacks the LoRAs' ``down`` and ``U`` their
  scaled ``up`` (``s`` folded in float32), both rounded once to the compute dtype and kept on the
  layer as the buffers of a :class:`LoraDelta` child (so they move with ``.to()`` and travel in block
  swap's packed blocks). Memory: the factors only; time: two thin matmuls per changed layer.

A strength (times block factor) of 0 leaves a layer out entirely, so it is bit-identical to no LoRA.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from ..dit.model import HunyuanVideoTransformer
from .formats import LoraFile, LoraTerm
from .strengths import BlockStrengths

log = logging.getLogger("HunyuanVideo")

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
)
_MERGE_ROWS = 4096  # rows merged at a time: bounds the float32 temporaries to a few hundred MB
# ``auto`` merges into float weights while the merged copies add at most this share of the model's bytes.
MERGE_BUDGET = 0.10


class ApplyMode(str, Enum):
    """How LoRA changes reach the computation (see the module doc)."""

    AUTO = "auto"  # merge into float weights within MERGE_BUDGET, else on the fly; FP8 and GGUF on the fly
    MERGE = "merge"  # float weights always; FP8 / GGUF layers still go on the fly
    ON_THE_FLY = "on_the_fly"


@dataclass(frozen=True)
class AppliedLora:
    """A LoRA with its strength and optional per-block factors."""

    lora: LoraFile
    strength: float = 1.0
    blocks: BlockStrengths = field(default_factory=BlockStrengths)


class LoraDelta(nn.Module):
    """A layer's LoRA factors in the compute dtype: ``up [out, R]`` (scaled) and ``down [R, in]``."""

    def __init__(self, up: torch.Tensor, down: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("up", up)
        self.register_buffer("down", down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.down.to(x.dtype)), self.up.to(x.dtype))


def _add_delta(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """The forward hook of a layer changed on the fly: ``output += (x @ D^T) @ U^T``.

    Accumulated into the layer's fresh output (``addmm_``): no second ``[tokens, out]`` tensor, which on
    the CPU costs more than the thin matmuls themselves.
    """
    delta = module.lora_delta
    hidden = F.linear(args[0], delta.down.to(args[0].dtype))
    flat = output.view(-1, output.shape[-1])
    flat.addmm_(hidden.reshape(-1, hidden.shape[-1]), delta.up.to(output.dtype).t())
    return output


def apply_loras(
    model: HunyuanVideoTransformer,
    loras: Sequence[AppliedLora],
    mode: ApplyMode | str = ApplyMode.AUTO,
    progress: Callable[[int, int], None] | None = None,
) -> HunyuanVideoTransformer:
    """A new DiT sharing ``model``'s base weights, with ``model``'s LoRAs and then ``loras`` applied.

    ``mode`` (:class:`ApplyMode`) applies to the whole stack. An empty stack returns a plain copy of
    the base tree (the base itself is never returned, so callers may change the result freely).
    ``progress(done, total)`` is called after each changed layer and may raise to cancel.
    """
    mode = ApplyMode(mode)
    base = model.__dict__.get("lora_base", model)
    stack = tuple(model.__dict__.get("lora_stack", ())) + tuple(loras)
    tree = share_tree(base)
    changes = _changes(base, stack)
    merge = _merges(base, changes, mode)
    merged = 0
    for done, (name, terms) in enumerate(changes.items(), 1):
        layer = tree.get_submodule(name)
        up, down = _pair(layer.out_features, terms)
        if merge and type(layer) is nn.Linear:
            layer.weight = nn.Parameter(_merged(layer.weight, up, down), requires_grad=False)
            merged += 1
        else:
            attach_delta(layer, up, down, base.compute_dtype)
        del up, down
        if progress is not None:
            progress(done, len(changes))
    tree.__dict__.update(lora_base=base, lora_stack=stack)
    log.info(
        "HunyuanVideo LoRA: %d layers changed (%d merged, %d on the fly)", len(changes), merged, len(changes) - merged
    )
    return tree


def remove_loras(model: HunyuanVideoTransformer) -> HunyuanVideoTransformer:
    """The base model ``model``'s LoRAs were applied to (itself when it has none)."""
    return model.__dict__.get("lora_base", model)


def share_tree(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree: new modules and Parameter objects over the same tensors, own hook tables."""
    clone = copy.copy(module)
    clone._parameters = {
        name: None if p is None else nn.Parameter(p, requires_grad=p.requires_grad)
        for name, p in module._parameters.items()
    }
    clone._buffers = dict(module._buffers)
    clone._modules = {name: None if m is None else share_tree(m) for name, m in module._modules.items()}
    for attr in _HOOK_DICTS:
        if attr in module.__dict__:
            clone.__dict__[attr] = OrderedDict(module.__dict__[attr])
    return clone


def _changes(base: HunyuanVideoTransformer, stack: Sequence[AppliedLora]) -> dict[str, list[tuple[LoraTerm, float]]]:
    """Module name -> the LoRA terms that change it with their total scales (zero scales left out)."""
    changes: dict[str, list[tuple[LoraTerm, float]]] = {}
    for applied in stack:
        for term in applied.lora.terms:
            scale = applied.strength * applied.blocks.factor(term.target.module) * term.factors.scale
            if scale != 0:
                changes.setdefault(term.target.module, []).append((term, scale))
    return changes


def _pair(out: int, terms: list[tuple[LoraTerm, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(up [out, R] float32, scaled, rows placed; down [R, in] as stored)`` for one layer's terms.

    Made one layer at a time, so only one layer's float32 ``up`` exists at once.
    """
    ups, downs = [], []
    for term, scale in terms:
        target, factors = term.target, term.factors
        up = torch.zeros(out, factors.up.shape[1], device=factors.up.device)
        up[target.row : target.row + target.rows] = factors.up.float() * scale
        ups.append(up)
        downs.append(factors.down)
    if len(terms) == 1:
        return ups[0], downs[0]
    dtype = downs[0].dtype if len({d.dtype for d in downs}) == 1 else torch.float32
    return torch.cat(ups, dim=1), torch.cat([d.to(dtype) for d in downs], dim=0)


def _merges(base: nn.Module, changes: dict, mode: ApplyMode) -> bool:
    """Whether float layers are merged: always in ``merge``, within :data:`MERGE_BUDGET` in ``auto``."""
    if mode is not ApplyMode.AUTO:
        return mode is ApplyMode.MERGE
    layers = [base.get_submodule(name) for name in changes]
    copies = sum(layer.weight.nbytes for layer in layers if type(layer) is nn.Linear)
    total = sum(t.nbytes for t in [*base.parameters(), *base.buffers()])
    return copies <= MERGE_BUDGET * total


def _merged(weight: torch.Tensor, up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """``dtype(float32(W) + up @ down)``, a block of rows at a time, on the weight's device."""
    out = torch.empty_like(weight)
    up, down = up.to(weight.device), down.to(weight.device, torch.float32)
    for start in range(0, weight.shape[0], _MERGE_ROWS):
        rows = slice(start, start + _MERGE_ROWS)
        out[rows] = (weight[rows].float() + up[rows] @ down).to(weight.dtype)
    return out


def attach_delta(layer: nn.Module, up: torch.Tensor, down: torch.Tensor, dtype: torch.dtype) -> None:
    """Make ``layer`` (a Linear of any storage, not shared with a base model) add ``(x @ down^T) @ up^T``."""
    device = layer.weight.device
    layer.lora_delta = LoraDelta(up.to(device, dtype), down.to(device, dtype))
    layer.register_forward_hook(_add_delta)
