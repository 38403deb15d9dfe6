"""Reading a LoRA file of any HunyuanVideo convention into changes of the DiT's Linear layers.

A key is ``<prefix><module><sep><suffix>``: the prefix says the convention (:data:`.names.PREFIXES`),
the module is resolved by :func:`.names.target_table` (Tencent, ComfyUI-internal, diffusers names,
dotted or underscored), the suffix says the adapter part (:data:`.factors.SUFFIXES`). Examples of
what each trainer writes (sources cited in :mod:`.names` and :mod:`.factors`):

====================  ==========================================================================
diffusion-pipe        ``transformer.double_blocks.0.img_attn_qkv.lora_A.weight`` (or ``diffusion_model.``)
musubi-tuner / kohya  ``lora_unet_double_blocks_0_img_mlp_fc1.lora_down.weight`` + ``.alpha``
diffusers / peft      ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight`` (q/k/v split)
OneTrainer            ``lora_transformer_single_transformer_blocks_0_proj_mlp.lora_down.weight``
Tencent I2V           ``Hunyuan_video_I2V_lora_double_blocks_0_img_attn_qkv.lora_down.weight``
LyCORIS (musubi)      ``lora_unet_double_blocks_0_img_attn_qkv.hada_w1_a`` / ``.lokr_w1``
====================  ==========================================================================

Parts of a layer that diffusers splits (``to_q``/``to_k``/``to_v``, a single block's ``proj_mlp``)
become changes of the rows they cover in Tencent's packed ``*_qkv`` / ``linear1`` weight. Keys that
fit no layer are listed in :attr:`LoraFile.unmatched` with the reason, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import CheckpointError, WrongModelError, open_checkpoint
from ..identify import ModelKind, identify
from .factors import UNSUPPORTED, FactorError, LowRank, low_rank, split_key
from .families import foreign_kind
from .names import Target, strip_prefix, target_table

_I2V = "Tencent HunyuanVideo-I2V"
_SHOWN = 8


@dataclass(frozen=True)
class LoraTerm:
    """One LoRA module's change, on the rows ``target.row : target.row + target.rows`` of ``target.module``."""

    target: Target
    factors: LowRank
    keys: tuple[str, ...]


@dataclass
class LoraFile:
    """A LoRA read for a DiT: its changes and an account of every key in the file."""

    name: str
    terms: list[LoraTerm]
    total_keys: int
    unmatched: dict[str, str]  # key -> why it changes nothing
    conventions: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def matched_keys(self) -> int:
        return self.total_keys - len(self.unmatched)

    def summary(self) -> str:
        """One paragraph for logs and the node's text output: format, counts, every unmatched key."""
        what = f"{', '.join(self.kinds) or 'LoRA'} in {' + '.join(self.conventions) or 'unknown'} naming"
        lines = [
            f"{self.name}: {what}; {self.matched_keys}/{self.total_keys} keys matched, "
            f"{len({t.target.module for t in self.terms})} layers changed."
        ]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  not applied: {key} ({why})" for key, why in self.unmatched.items()]
        return "\n".join(lines)


def read_lora(path: str | os.PathLike, shapes: Mapping[str, tuple[int, int]]) -> LoraFile:
    """Read the LoRA file at ``path`` for a DiT whose Linears have ``shapes`` (:func:`.names.linear_shapes`).

    Raises the checkpoint errors: :class:`~..checkpoint.CorruptCheckpointError` for a damaged file,
    :class:`~..checkpoint.WrongModelError` for a model file or a LoRA for another model,
    :class:`~..checkpoint.CheckpointError` for factors that do not fit together (a rank mismatch).
    """
    reader = open_checkpoint(path)
    name = Path(path).name
    try:
        tensors = {reader.prefix + key: _as_float(reader.load(key)) for key in reader.keys()}
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"{reader.describe()} could not be read as a LoRA: {error}") from None
    return parse_lora(tensors, shapes, name)


def _as_float(stored) -> torch.Tensor:
    """A stored tensor as a float tensor: bf16/fp16/fp32 as they are (views of the file), others float32."""
    return stored.data if stored.is_plain_float else stored.dense(torch.float32)


def parse_lora(tensors: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, int]], name: str) -> LoraFile:
    """The changes the LoRA ``tensors`` (keys as stored) make to a DiT with Linear ``shapes``."""
    groups, unmatched = _group(tensors)
    if not groups:
        kind = identify({key: tuple(t.shape) for key, t in tensors.items()})
        what = f"it looks like {kind.what}" if kind not in (None, ModelKind.LORA) else "no key names a LoRA part"
        raise WrongModelError(f"'{name}' is not a LoRA: {what} (keys such as {sorted(tensors)[:3]}).")
    resolved, conventions = _resolve(groups, shapes, name)
    terms = []
    for module, parts in groups.items():
        target = resolved.get(module)
        unsupported = sorted(set(parts) & set(UNSUPPORTED))
        if target is None or unsupported:
            why = UNSUPPORTED[unsupported[0]] if target else "names no layer of the HunyuanVideo transformer"
            unmatched.update({f"{module}.{suffix}": why for suffix in parts})
            continue
        factors = _factors(name, module, parts, target, shapes[target.module])
        terms.append(LoraTerm(target, factors, tuple(f"{module}.{suffix}" for suffix in parts)))
    notes = [f"made with Tencent's HunyuanVideo-I2V trainer; applied to {_MODEL}"] if _I2V in conventions else []
    kinds = sorted({term.factors.kind for term in terms})
    return LoraFile(name, terms, len(tensors), unmatched, sorted(set(conventions)), kinds, notes)


_MODEL = "this text-to-video transformer (its layers have the same names and shapes)"


def _resolve(groups: Mapping[str, dict], shapes: Mapping[str, tuple[int, int]], name: str) -> tuple[dict, list[str]]:
    """LoRA module -> :class:`Target` for the modules that name a layer, and their conventions; refuses a
    LoRA whose names belong to another model (:mod:`.families`)."""
    table = target_table(shapes)
    resolved, unresolved, conventions = {}, [], []
    for module in groups:
        stripped, convention = strip_prefix(module)
        target = table.get(stripped)
        if target is None:
            unresolved.append(stripped)
            continue
        resolved[module] = target
        conventions.append(_convention(convention, target))
    kind = foreign_kind([strip_prefix(module)[0] for module in groups], unresolved)
    if not resolved or kind in (ModelKind.FLUX, ModelKind.HUNYUAN_DIT_1_5):
        raise WrongModelError(_foreign_message(name, kind, sorted(groups)))
    return resolved, conventions


def _group(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    groups: dict[str, dict[str, torch.Tensor]] = {}
    unmatched = {}
    for key, tensor in tensors.items():
        found = split_key(key)
        if found is None:
            unmatched[key] = "not a LoRA tensor name (no lora_A/lora_B, lora_down/lora_up, alpha, hada_ or lokr_ part)"
            continue
        module, suffix = found
        groups.setdefault(module, {})[suffix] = tensor
    return groups, unmatched


def _convention(prefix_convention: str | None, target: Target) -> str:
    if prefix_convention in ("OneTrainer", "musubi-tuner / kohya", _I2V, "peft", "LyCORIS"):
        return prefix_convention
    if target.convention == "diffusers":
        return "diffusers / peft"
    if target.convention == "ComfyUI internal":
        return "ComfyUI"
    return "diffusion-pipe / ComfyUI"


def _factors(name: str, module: str, parts: dict, target: Target, shape: tuple[int, int]) -> LowRank:
    try:
        factors = low_rank(parts)
    except FactorError as error:
        raise CheckpointError(f"'{name}': LoRA module '{module}' {error}; the file is damaged or not a LoRA.") from None
    rows, (_, width) = factors.up.shape[0], shape
    if factors.down.shape[1] != width or rows != target.rows:
        raise WrongModelError(
            f"'{name}': '{module}' changes a [{rows}, {factors.down.shape[1]}] weight, but HunyuanVideo's "
            f"{target.module} (rows {target.row}..{target.row + target.rows}) is [{target.rows}, {width}]: "
            "a LoRA for another model or another HunyuanVideo size."
        )
    if target.swap_halves:  # diffusers' [scale; shift] rows -> Tencent's [shift; scale]
        up = torch.cat(factors.up.chunk(2, dim=0)[::-1], dim=0)
        factors = LowRank(up, factors.down, factors.scale, factors.kind)
    return factors


def _foreign_message(name: str, kind: ModelKind | None, modules: list[str]) -> str:
    shown = ", ".join(modules[:3])
    if kind is None:
        return (
            f"'{name}' is a LoRA, but none of its {len(modules)} layers is a HunyuanVideo transformer layer "
            f"(e.g. {shown}); it was made for another model."
        )
    return f"'{name}' is a LoRA for {kind.what}, not for the HunyuanVideo transformer (layers such as {shown})."
