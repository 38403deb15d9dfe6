"""Naming the model a foreign LoRA was made for, from the module names it changes.

LoRAs for FLUX share HunyuanVideo's block names (``double_blocks.N.img_attn_qkv``, and diffusers'
``transformer_blocks``) and widths, so a FLUX LoRA would silently fit. What tells them apart:

- FLUX has 19 double and 38 single blocks; a LoRA that touches double block 19 or single block 38
  or 39 is HunyuanVideo's.
- FLUX's own layer names are ComfyUI's internal HunyuanVideo names (``img_mod.lin``, ``img_mlp.0``,
  ``modulation.lin``; comfy/ldm/flux/layers.py, and HunyuanVideo reuses them in ComfyUI). A LoRA
  using only those names and only blocks FLUX has is called a FLUX LoRA; one made from ComfyUI's
  HunyuanVideo that trains every block still loads.
- Names only HunyuanVideo has (the token refiner, ``img_mlp.fc1``, ``img_mod.linear``...).

Other families have names HunyuanVideo lacks (Wan's ``self_attn.q``, SD's ``down_blocks``...). A
HunyuanVideo 1.5 LoRA names separate ``img_attn_q/k/v`` layers and up to 54 double blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..identify import ModelKind

# (fragments in a module name with '_' for '.', kind). Checked in order on unresolved names.
_FOREIGN: tuple[tuple[tuple[str, ...], ModelKind], ...] = (
    (("byt5_in", "cond_type_embed", "_img_attn_q_", "_img_attn_k_", "_img_attn_v_"), ModelKind.HUNYUAN_DIT_1_5),
    (("self_attn_q", "cross_attn", "ffn_0", "ffn_2", "blocks_0_self_attn"), ModelKind.WAN),
    (("joint_blocks", "context_block", "x_block"), ModelKind.SD3),
    (("adaln_single", "scale_shift_table", "attn1_to_q", "attn2_to_q"), ModelKind.LTXV),
    (("input_blocks", "output_blocks", "middle_block", "label_emb"), ModelKind.SDXL),
    (("down_blocks", "up_blocks", "mid_block", "text_model_encoder", "lora_te"), ModelKind.SD),
)
_FLUX_ONLY = ("_mod_lin", "_mlp_0", "_mlp_2", "modulation_lin", "time_in_in_layer", "guidance_in_in_layer")
_HUNYUAN_ONLY = ("individual_token_refiner", "token_refiner", "_mlp_fc", "_mod_linear", "modulation_linear")
_BLOCK = re.compile(r"(double_blocks|single_blocks|single_transformer_blocks|transformer_blocks)_(\d+)_")
# The first block index FLUX lacks, per block kind (FLUX.1: 19 double, 38 single blocks).
_FLUX_DEPTH = {"double_blocks": 19, "transformer_blocks": 19, "single_blocks": 38, "single_transformer_blocks": 38}


def foreign_kind(modules: Iterable[str], unresolved: Iterable[str]) -> ModelKind | None:
    """The other model a LoRA with these module names (prefix removed) is for, or None for HunyuanVideo.

    ``unresolved``: the names that match no HunyuanVideo layer (their spelling names the family).
    """
    flat = [name.replace(".", "_") + "_" for name in modules]
    for fragments, kind in _FOREIGN:
        if any(fragment in name for name in (n.replace(".", "_") + "_" for n in unresolved) for fragment in fragments):
            return kind
    if _looks_like_flux(flat):
        return ModelKind.FLUX
    return None


def _looks_like_flux(flat: list[str]) -> bool:
    if not any(fragment + "_" in name for name in flat for fragment in _FLUX_ONLY):
        return False
    if any(fragment in name for name in flat for fragment in _HUNYUAN_ONLY):
        return False
    for name in flat:
        match = _BLOCK.search(name)
        if match and int(match.group(2)) >= _FLUX_DEPTH[match.group(1)]:
            return False
    return True
