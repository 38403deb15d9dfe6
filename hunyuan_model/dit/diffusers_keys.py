"""Converting DiT state dicts between Tencent's keys and diffusers' ``HunyuanVideoTransformer3DModel`` keys.

Besides renames, three layouts differ (spec section 3.2): Tencent's fused ``*_qkv`` Linears are diffusers'
separate ``to_q/to_k/to_v`` (or ``add_*_proj`` for the text stream); a single block's ``linear1`` is
diffusers' ``to_q, to_k, to_v, proj_mlp``; and the final modulation's rows are ``[shift; scale]`` for
Tencent but ``[scale; shift]`` for diffusers. Both functions work on any tensors, ``meta`` included, so
a loader can convert a file header's shapes; an unknown key raises ``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

_REFINER = "txt_in.individual_token_refiner.blocks.{n}."
_DF_REFINER = "context_embedder.token_refiner.refiner_blocks.{n}."
_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
_DIFFUSERS_MARKERS = ("x_embedder.proj.weight", "transformer_blocks.0.attn.add_q_proj.weight")

# (Tencent module, diffusers module(s), how the tensors relate); {n} is a block index.
_RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("img_in.proj", ("x_embedder.proj",), "same"),
    ("time_in.mlp.0", ("time_text_embed.timestep_embedder.linear_1",), "same"),
    ("time_in.mlp.2", ("time_text_embed.timestep_embedder.linear_2",), "same"),
    ("guidance_in.mlp.0", ("time_text_embed.guidance_embedder.linear_1",), "same"),
    ("guidance_in.mlp.2", ("time_text_embed.guidance_embedder.linear_2",), "same"),
    ("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",), "same"),
    ("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",), "same"),
    ("txt_in.input_embedder", ("context_embedder.proj_in",), "same"),
    ("txt_in.t_embedder.mlp.0", ("context_embedder.time_text_embed.timestep_embedder.linear_1",), "same"),
    ("txt_in.t_embedder.mlp.2", ("context_embedder.time_text_embed.timestep_embedder.linear_2",), "same"),
    ("txt_in.c_embedder.linear_1", ("context_embedder.time_text_embed.text_embedder.linear_1",), "same"),
    ("txt_in.c_embedder.linear_2", ("context_embedder.time_text_embed.text_embedder.linear_2",), "same"),
    (_REFINER + "norm1", (_DF_REFINER + "norm1",), "same"),
    (_REFINER + "norm2", (_DF_REFINER + "norm2",), "same"),
    (_REFINER + "self_attn_qkv", tuple(_DF_REFINER + m for m in _QKV), "split"),
    (_REFINER + "self_attn_proj", (_DF_REFINER + "attn.to_out.0",), "same"),
    (_REFINER + "mlp.fc1", (_DF_REFINER + "ff.net.0.proj",), "same"),
    (_REFINER + "mlp.fc2", (_DF_REFINER + "ff.net.2",), "same"),
    (_REFINER + "adaLN_modulation.1", (_DF_REFINER + "norm_out.linear",), "same"),
    ("double_blocks.{n}.img_mod.linear", ("transformer_blocks.{n}.norm1.linear",), "same"),
    ("double_blocks.{n}.txt_mod.linear", ("transformer_blocks.{n}.norm1_context.linear",), "same"),
    ("double_blocks.{n}.img_attn_qkv", tuple("transformer_blocks.{n}." + m for m in _QKV), "split"),
    (
        "double_blocks.{n}.txt_attn_qkv",
        tuple(f"transformer_blocks.{{n}}.attn.add_{x}_proj" for x in "qkv"),
        "split",
    ),
    ("double_blocks.{n}.img_attn_q_norm", ("transformer_blocks.{n}.attn.norm_q",), "same"),
    ("double_blocks.{n}.img_attn_k_norm", ("transformer_blocks.{n}.attn.norm_k",), "same"),
    ("double_blocks.{n}.txt_attn_q_norm", ("transformer_blocks.{n}.attn.norm_added_q",), "same"),
    ("double_blocks.{n}.txt_attn_k_norm", ("transformer_blocks.{n}.attn.norm_added_k",), "same"),
    ("double_blocks.{n}.img_attn_proj", ("transformer_blocks.{n}.attn.to_out.0",), "same"),
    ("double_blocks.{n}.txt_attn_proj", ("transformer_blocks.{n}.attn.to_add_out",), "same"),
    ("double_blocks.{n}.img_mlp.fc1", ("transformer_blocks.{n}.ff.net.0.proj",), "same"),
    ("double_blocks.{n}.img_mlp.fc2", ("transformer_blocks.{n}.ff.net.2",), "same"),
    ("double_blocks.{n}.txt_mlp.fc1", ("transformer_blocks.{n}.ff_context.net.0.proj",), "same"),
    ("double_blocks.{n}.txt_mlp.fc2", ("transformer_blocks.{n}.ff_context.net.2",), "same"),
    (
        "single_blocks.{n}.linear1",
        tuple("single_transformer_blocks.{n}." + m for m in (*_QKV, "proj_mlp")),
        "split_mlp",
    ),
    ("single_blocks.{n}.linear2", ("single_transformer_blocks.{n}.proj_out",), "same"),
    ("single_blocks.{n}.q_norm", ("single_transformer_blocks.{n}.attn.norm_q",), "same"),
    ("single_blocks.{n}.k_norm", ("single_transformer_blocks.{n}.attn.norm_k",), "same"),
    ("single_blocks.{n}.modulation.linear", ("single_transformer_blocks.{n}.norm.linear",), "same"),
    ("final_layer.linear", ("proj_out",), "same"),
    ("final_layer.adaLN_modulation.1", ("norm_out.linear",), "swap_halves"),
]


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{n}"), r"(?P<n>\d+)"))


_TENCENT = [(_pattern(t), t, d, kind) for t, d, kind in _RULES]
_DIFFUSERS = [(_pattern(dm), i, t, d, kind) for t, d, kind in _RULES for i, dm in enumerate(d)]


def is_diffusers_dit(keys: Iterable[str]) -> bool:
    """Whether ``keys`` (prefix removed) are a diffusers ``HunyuanVideoTransformer3DModel``'s."""
    keys = set(keys)
    return all(marker in keys for marker in _DIFFUSERS_MARKERS)


def tencent_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tencent-keyed DiT tensors -> diffusers keys. Splits are views, not copies."""
    out = {}
    unknown = []
    for key, tensor in state_dict.items():
        module, param = key.rsplit(".", 1)
        rule = _match_tencent(module)
        if rule is None:
            unknown.append(key)
            continue
        n, targets, kind = rule
        for target, part in zip(targets, _split(kind, tensor, state_dict, module, len(targets))):
            out[f"{target.format(n=n)}.{param}"] = part
    _raise_unknown(unknown, "Tencent")
    return out


def diffusers_to_tencent(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers-keyed DiT tensors -> Tencent keys (fused q/k/v and ``linear1`` are concatenated)."""
    groups: dict[str, tuple[str, list]] = {}
    unknown = []
    for key, tensor in state_dict.items():
        module, param = key.rsplit(".", 1)
        rule = _match_diffusers(module)
        if rule is None:
            unknown.append(key)
            continue
        n, index, target, parts, kind = rule
        name = f"{target.format(n=n)}.{param}"
        groups.setdefault(name, (kind, [None] * parts))[1][index] = tensor
    _raise_unknown(unknown, "diffusers")
    out = {}
    for name, (kind, parts) in groups.items():
        if any(p is None for p in parts):
            raise ValueError(f"diffusers state dict has only some of the {len(parts)} tensors that make up {name}.")
        out[name] = _join(kind, parts)
    return out


def _match_tencent(module: str) -> tuple[str, tuple[str, ...], str] | None:
    for pattern, _, targets, kind in _TENCENT:
        if m := pattern.fullmatch(module):
            return m.groupdict().get("n"), targets, kind
    return None


def _match_diffusers(module: str) -> tuple[str, int, str, int, str] | None:
    for pattern, index, target, sources, kind in _DIFFUSERS:
        if m := pattern.fullmatch(module):
            return m.groupdict().get("n"), index, target, len(sources), kind
    return None


def _split(
    kind: str, tensor: torch.Tensor, state_dict: Mapping[str, torch.Tensor], module: str, parts: int
) -> list[torch.Tensor]:
    if kind == "same":
        return [tensor]
    if kind == "swap_halves":
        shift, scale = tensor.chunk(2, dim=0)
        return [torch.cat((scale, shift), dim=0)]
    if kind == "split":
        return list(tensor.chunk(parts, dim=0))
    # linear1's rows are q | k | v | mlp; the hidden size is its input width.
    if f"{module}.weight" not in state_dict:
        raise ValueError(f"{module}.bias cannot be split without {module}.weight, which is missing.")
    hidden = state_dict[f"{module}.weight"].shape[1]
    return list(tensor.split([hidden, hidden, hidden, tensor.shape[0] - 3 * hidden], dim=0))


def _join(kind: str, parts: list[torch.Tensor]) -> torch.Tensor:
    if kind == "swap_halves":
        scale, shift = parts[0].chunk(2, dim=0)
        return torch.cat((shift, scale), dim=0)
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def _raise_unknown(unknown: list[str], convention: str) -> None:
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys are not {convention} HunyuanVideo DiT keys, e.g. {', '.join(sorted(unknown)[:5])}."
        )
