"""Tiny random LoRAs written in every convention, all encoding the same change, for tests and the demo.

:func:`random_factors` makes ``(up, down, alpha)`` per Tencent Linear; :func:`lora_tensors` writes
them as a trainer of the named convention does, so that every convention holds the same
``delta W = alpha / rank * up @ down``: where a convention has no alpha, ``up`` is scaled instead;
where it splits a layer (diffusers), ``up``'s rows are split and ``down`` repeated, as diffusers'
own converter does (loaders/lora_conversion_utils.py:1622-1633); LoHa and LoKr write the pair in
their own terms (``(w1a @ w1b) * ones``, ``kron([[1]], w2a @ w2b)``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..dit.diffusers_keys import tencent_to_diffusers
from .formats import write_safetensors_file

Factors = dict[str, tuple[torch.Tensor, torch.Tensor, float]]

CONVENTIONS = (
    "diffusion_pipe",
    "comfyui",
    "comfyui_internal",
    "musubi",
    "diffusers",
    "onetrainer",
    "tencent_i2v",
    "loha",
    "lokr",
)


def random_factors(
    shapes: Mapping[str, tuple[int, int]], rank: int = 4, alpha: float = 2.0, seed: int = 0, gain: float = 0.5
) -> Factors:
    """Tencent module -> ``(up [out, rank], down [rank, in], alpha)`` with a change of about ``gain`` times
    a ``1/sqrt(in)``-scaled weight (values rounded to bfloat16, so bf16 files hold them exactly)."""
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for name, (out, inp) in shapes.items():
        up = torch.randn(out, rank, generator=generator) * gain / rank**0.5
        down = torch.randn(rank, inp, generator=generator) / inp**0.5
        factors[name] = (up.bfloat16().float(), down.bfloat16().float(), alpha)
    return factors


def delta(factors: Factors, name: str) -> torch.Tensor:
    """The float32 change ``alpha / rank * up @ down`` the factors make to module ``name``."""
    up, down, alpha = factors[name]
    return alpha / down.shape[0] * up @ down


def lora_tensors(factors: Factors, convention: str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The factors as a LoRA file of ``convention`` (one of :data:`CONVENTIONS`) stores them."""
    out: dict[str, torch.Tensor] = {}
    for name, (up, down, alpha) in factors.items():
        rank = down.shape[0]
        baked = up * (alpha / rank)
        if convention in ("diffusion_pipe", "comfyui", "comfyui_internal"):
            prefix = "transformer." if convention == "diffusion_pipe" else "diffusion_model."
            module = _comfy_internal(name) if convention == "comfyui_internal" else name
            out |= {f"{prefix}{module}.lora_A.weight": down, f"{prefix}{module}.lora_B.weight": baked}
        elif convention in ("musubi", "tencent_i2v"):
            prefix = "lora_unet_" if convention == "musubi" else "Hunyuan_video_I2V_lora_"
            key = prefix + name.replace(".", "_")
            # Tencent's loader ignores alpha; its trainer always writes alpha = rank.
            up_, alpha_ = (up, alpha) if convention == "musubi" else (baked, float(rank))
            out |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up_, f"{key}.alpha": torch.tensor(alpha_)}
        elif convention in ("diffusers", "onetrainer"):
            out |= _diffusers(name, up, down, alpha, convention)
        elif convention == "loha":
            key = "lora_unet_" + name.replace(".", "_")
            ones_a, ones_b = torch.ones(up.shape[0], rank), torch.ones(rank, down.shape[1]) / rank
            out |= {f"{key}.hada_w1_a": up, f"{key}.hada_w1_b": down, f"{key}.hada_w2_a": ones_a}
            out |= {f"{key}.hada_w2_b": ones_b, f"{key}.alpha": torch.tensor(alpha)}
        elif convention == "lokr":
            key = "lora_unet_" + name.replace(".", "_")
            out |= {f"{key}.lokr_w1": torch.ones(1, 1), f"{key}.lokr_w2_a": up, f"{key}.lokr_w2_b": down}
            out[f"{key}.alpha"] = torch.tensor(alpha)
        else:
            raise ValueError(f"unknown LoRA convention {convention!r}; expected one of {CONVENTIONS}.")
    return {key: value.to(dtype) if key.endswith("weight") else value for key, value in out.items()}


def _diffusers(name: str, up: torch.Tensor, down: torch.Tensor, alpha: float, convention: str) -> dict:
    """diffusers names (``transformer.``, lora_A/lora_B, alpha baked) or OneTrainer's (``lora_transformer_``, alpha)."""
    out = {}
    rank = down.shape[0]
    stand_in = torch.zeros(1, dtype=torch.uint8).expand(up.shape[0], down.shape[1])  # only its shape is read
    parts = tencent_to_diffusers({f"{name}.weight": stand_in})
    rows = [t.shape[0] for t in parts.values()]
    if name == "final_layer.adaLN_modulation.1":  # diffusers orders the halves [scale; shift]
        up = torch.cat(up.chunk(2, dim=0)[::-1], dim=0)
    for key, part_up in zip(parts, up.split(rows, dim=0)):
        module = key.removesuffix(".weight")
        if convention == "diffusers":
            out |= {
                f"transformer.{module}.lora_A.weight": down,
                f"transformer.{module}.lora_B.weight": part_up * alpha / rank,
            }
        else:
            lora = "lora_transformer_" + module.replace(".", "_")
            out |= {
                f"{lora}.lora_down.weight": down,
                f"{lora}.lora_up.weight": part_up,
                f"{lora}.alpha": torch.tensor(alpha),
            }
    return out


def _comfy_internal(name: str) -> str:
    from ..lora.names import _comfy_name

    return _comfy_name(name)


def write_lora(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Save LoRA tensors as safetensors (factors diffusers' splits share are saved as their own copies)."""
    return write_safetensors_file({key: value.clone() for key, value in tensors.items()}, path)
