"""Which DiT Linear a LoRA module name means, in every naming convention HunyuanVideo LoRAs use.

A LoRA names the layer it changes in one of these spellings (all resolved here to Tencent's module
name and, for layers other conventions split, the rows of Tencent's packed weight the part covers):

- Tencent's own names (``double_blocks.0.img_attn_qkv``), used by diffusion-pipe and ComfyUI
  (``transformer.`` or ``diffusion_model.`` + Tencent names; ComfyUI comfy/lora.py:274-284 in 0.3.64,
  278-288 in 0.19.3), dotted, and by musubi-tuner / kohya with ``.`` replaced by ``_`` after
  ``lora_unet_`` (musubi-tuner src/musubi_tuner/networks/lora.py:20 and :388, prefix ``lora_unet``;
  convert_lora.py:136-142 undoes the underscores the same way), and by Tencent's HunyuanVideo-I2V
  trainer after ``Hunyuan_video_I2V_lora_`` (hyvideo/utils/train_utils.py:425-443 writes
  ``Hunyuan_video_I2V_lora_double_blocks_0_img_attn_qkv.lora_down.weight``; inference.py:561).
- ComfyUI's internal names for the same layers (``img_mod.lin``, ``img_attn.qkv``, ``img_mlp.0``,
  ``modulation.lin``, ``txt_in.t_embedder.in_layer``: comfy/supported_models.py:832-840), which LoRAs
  saved from ComfyUI carry and kijai's wrapper renames (nodes.py:72-87).
- diffusers' names (``transformer_blocks.0.attn.to_q``), which split Tencent's fused ``*_qkv`` into
  q/k/v and a single block's ``linear1`` into q/k/v/``proj_mlp`` (rows q | k | v | mlp) and order the
  final modulation ``[scale; shift]`` instead of ``[shift; scale]`` (the table is
  :mod:`..dit.diffusers_keys`; diffusers' own LoRA converter,
  loaders/lora_conversion_utils.py:1594-1760 in diffusers 0.42.1, does the reverse), dotted for
  diffusers/peft files and underscored after ``lora_transformer_`` for OneTrainer (its Flux-style
  names, ComfyUI comfy/lora.py:262 and ComfyUI issue #6531).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..dit.diffusers_keys import tencent_to_diffusers

# Prefixes before the module name, and the convention each one implies (checked longest first).
PREFIXES: tuple[tuple[str, str], ...] = (
    ("Hunyuan_video_I2V_lora_", "Tencent HunyuanVideo-I2V"),
    ("model.diffusion_model.", "ComfyUI"),
    ("lora_transformer_", "OneTrainer"),
    ("base_model.model.", "peft"),
    ("diffusion_model.", "diffusion-pipe / ComfyUI"),
    ("transformer.", "diffusion-pipe / diffusers"),
    ("lora_unet_", "musubi-tuner / kohya"),
    ("lycoris_", "LyCORIS"),
)

# ComfyUI's internal spellings of Tencent names (comfy/supported_models.py:832-840), as (Tencent, ComfyUI).
_COMFY_RENAMES = (
    ("txt_in.t_embedder.mlp.0", "txt_in.t_embedder.in_layer"),
    ("txt_in.t_embedder.mlp.2", "txt_in.t_embedder.out_layer"),
    ("txt_in.c_embedder.linear_1", "txt_in.c_embedder.in_layer"),
    ("txt_in.c_embedder.linear_2", "txt_in.c_embedder.out_layer"),
    ("_mod.linear", "_mod.lin"),
    ("_attn_qkv", "_attn.qkv"),
    ("_attn_proj", "_attn.proj"),
    ("mlp.fc1", "mlp.0"),
    ("mlp.fc2", "mlp.2"),
    ("modulation.linear", "modulation.lin"),
    ("_in.mlp.0", "_in.in_layer"),
    ("_in.mlp.2", "_in.out_layer"),
)


@dataclass(frozen=True)
class Target:
    """The part of a DiT Linear a LoRA module changes: Tencent ``module``, the first output row
    ``row`` and the number of rows ``rows`` (the whole weight unless the name is a split part), and
    ``swap_halves`` for diffusers' ``norm_out.linear`` whose two halves Tencent stores the other way round."""

    module: str
    row: int
    rows: int
    convention: str
    swap_halves: bool = False


def linear_shapes(model: torch.nn.Module) -> dict[str, tuple[int, int]]:
    """Tencent name -> ``(out_features, in_features)`` of every Linear-like module (any weight storage)."""
    return {
        name: (module.out_features, module.in_features)
        for name, module in model.named_modules()
        if hasattr(module, "in_features") and hasattr(module, "out_features")
    }


def target_table(shapes: Mapping[str, tuple[int, int]]) -> dict[str, Target]:
    """Every spelling of every Linear in ``shapes`` -> its :class:`Target`, dotted and underscored."""
    return dict(_table(tuple(shapes.items())))


@lru_cache(maxsize=4)  # one per model layout in use; building it converts every name
def _table(shapes: tuple[tuple[str, tuple[int, int]], ...]) -> dict[str, Target]:
    table: dict[str, Target] = {}
    for name, (out, inp) in shapes:
        whole = Target(name, 0, out, "Tencent")
        _add(table, name, whole)
        _add(table, _comfy_name(name), Target(name, 0, out, "ComfyUI internal"))
        for part_name, target in _diffusers_parts(name, out, inp):
            _add(table, part_name, target)
    return table


def _add(table: dict[str, Target], name: str, target: Target) -> None:
    table.setdefault(name, target)
    table.setdefault(name.replace(".", "_"), target)


def _comfy_name(name: str) -> str:
    for tencent, comfy in _COMFY_RENAMES:
        name = name.replace(tencent, comfy)
    return name


def _diffusers_parts(name: str, out: int, inp: int) -> list[tuple[str, Target]]:
    """diffusers' module names for Tencent Linear ``name``, each with the rows of the packed weight it is."""
    # A zero-stride stand-in of the weight's shape: the conversion only reads shapes (meta tensors
    # would do, but their first concatenation imports torch's decompositions, seconds on a small CPU).
    stand_in = torch.zeros(1, dtype=torch.uint8).expand(out, inp)
    try:
        parts = tencent_to_diffusers({f"{name}.weight": stand_in})
    except ValueError:
        return []
    names = [key.removesuffix(".weight") for key in parts]
    if len(names) == 1:
        swap = name == "final_layer.adaLN_modulation.1"
        return [(names[0], Target(name, 0, out, "diffusers", swap_halves=swap))]
    # q | k | v (equal thirds), or a single block's linear1: q | k | v (hidden rows each) | mlp.
    sizes = [out // 3] * 3 if len(names) == 3 else [inp, inp, inp, out - 3 * inp]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [(part, Target(name, start, size, "diffusers")) for part, start, size in zip(names, starts, sizes)]


def strip_prefix(module: str) -> tuple[str, str | None]:
    """``module`` without the convention prefix it starts with, and that convention (None: no prefix)."""
    for prefix, convention in PREFIXES:
        if module.startswith(prefix):
            return module[len(prefix) :], convention
    return module, None
