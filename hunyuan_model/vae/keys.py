"""State-dict layouts of the HunyuanVideo VAE (files that are something else are named by the loader).

This package's module names are Tencent's checkpoint keys (``pytorch_model.pt``, kijai's and
Comfy-Org's ``hunyuan_video_vae_bf16.safetensors``), which diffusers' ``AutoencoderKLHunyuanVideo``
uses unchanged. Also read: ComfyUI's internal layout (``decoder.up.3.block.0``, ``mid.attn_1.q``
as 1x1x1 convs; what a VAE saved from ComfyUI holds), diffusers' pre-0.15 attention names
(``query``/``key``/``value``/``proj_attn``), wrappers (``state_dict``, ``module``, ``model``) and
any prefix (``vae.``, ``first_stage_model.``...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .config import NUM_BLOCKS

WRAPPERS = ("state_dict", "module", "model")
MARKER = "decoder.conv_in.conv.weight"

# (ComfyUI pattern, our replacement), applied in order to every key.
_COMFY_RENAMES = [
    (r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
    (r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0."),
    (r"^decoder\.up\.(\d+)\.block\.(\d+)\.", lambda m: f"decoder.up_blocks.{_up(m[1])}.resnets.{m[2]}."),
    (r"^decoder\.up\.(\d+)\.upsample\.", lambda m: f"decoder.up_blocks.{_up(m[1])}.upsamplers.0."),
    (r"\.mid\.block_(\d+)\.", lambda m: f".mid_block.resnets.{int(m[1]) - 1}."),
    (r"\.mid\.attn_1\.norm\.", ".mid_block.attentions.0.group_norm."),
    (r"\.mid\.attn_1\.(q|k|v)\.", r".mid_block.attentions.0.to_\1."),
    (r"\.mid\.attn_1\.proj_out\.", ".mid_block.attentions.0.to_out.0."),
    (r"\.nin_shortcut\.", ".conv_shortcut."),
    (r"\.norm_out\.", ".conv_norm_out."),
]
_OLD_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _up(comfy_index: str) -> int:
    return NUM_BLOCKS - 1 - int(comfy_index)  # ComfyUI counts decoder blocks from the full-resolution end


def canonical_state_dict(state: Mapping) -> dict[str, torch.Tensor] | None:
    """Weights in this package's layout, from any layout above; None when ``state`` holds no HunyuanVideo VAE."""
    state = _unwrap(state)
    prefix = next((k.removesuffix(MARKER) for k in state if isinstance(k, str) and k.endswith(MARKER)), None)
    if prefix is None:
        return None
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if "decoder.mid.block_1.norm1.weight" in state:
        state = {_rename(k, _COMFY_RENAMES): _attention_matrix(k, v) for k, v in state.items()}
    return {_modern_attention_name(k): v for k, v in state.items()}


def _unwrap(state: Mapping) -> Mapping:
    for wrapper in WRAPPERS:
        if isinstance(state.get(wrapper), Mapping):
            return state[wrapper]
    return state


def _rename(key: str, renames) -> str:
    for pattern, replacement in renames:
        key = re.sub(pattern, replacement, key)
    return key


def _attention_matrix(key: str, value: torch.Tensor) -> torch.Tensor:
    """ComfyUI stores the attention projections as 1x1x1 convolutions: drop the kernel dimensions."""
    if re.search(r"\.mid\.attn_1\.(q|k|v|proj_out)\.weight$", key) and value.ndim == 5:
        return value.reshape(value.shape[:2])
    return value


def _modern_attention_name(key: str) -> str:
    match = re.search(r"\.attentions\.0\.(query|key|value|proj_attn)\.", key)
    if match is None:
        return key
    return key.replace(f".{match[1]}.", f".{_OLD_ATTENTION[match[1]]}.")
