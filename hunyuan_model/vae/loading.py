"""Loading VAE weights from a file: safetensors (memory-mapped) or a PyTorch checkpoint (weights only)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoint.safetensors_file import read_header
from ..latent import LATENT_CHANNELS
from .config import VAEConfig
from .keys import canonical_state_dict
from .model import CausalVideoVAE

SAFETENSORS = (".safetensors", ".sft")
PICKLES = (".pt", ".pth", ".ckpt", ".bin")
EXTENSIONS = SAFETENSORS + PICKLES


def load_vae(
    path: str | os.PathLike, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu"
) -> CausalVideoVAE:
    """Build the VAE from a weight file in any supported layout (``keys.py``); sizes are read from the weights."""
    path = Path(path)
    state = canonical_state_dict(read_state_dict(path), source=str(path))
    try:
        config = VAEConfig.from_state_dict(state)
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"{path} has VAE weights but not the HunyuanVideo (1.0) VAE's structure ({error}). "
            f"The HunyuanVideo 1.5 and HunyuanImage VAEs are different models."
        ) from None
    if config.latent_channels != LATENT_CHANNELS:
        raise ValueError(
            f"{path} is a VAE with {config.latent_channels}-channel latents; HunyuanVideo's has {LATENT_CHANNELS} "
            f"(32 is HunyuanVideo 1.5's). Pick hunyuan_video_vae_bf16.safetensors or Tencent's vae/pytorch_model.pt."
        )
    with torch.device("meta"):
        vae = CausalVideoVAE(config)
    try:
        result = vae.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as error:  # size mismatches
        raise ValueError(f"{path} does not match the VAE structure its sizes imply: {error}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path} does not match the VAE structure its sizes imply ({config}): "
            f"missing {result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]}."
        )
    return vae.to(device=device, dtype=dtype).eval().requires_grad_(False)


def read_state_dict(path: Path) -> dict:
    """Tensors of a weight file, without running any pickled code."""
    if not path.is_file():
        raise FileNotFoundError(f"VAE file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        from safetensors import safe_open

        read_header(path)  # a truncated or damaged file is named as such, not by safetensors' bare message
        with safe_open(path, framework="pt") as file:
            return {key: file.get_tensor(key) for key in file.keys()}
    if suffix in PICKLES:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files written before torch 1.6 (not zip archives) cannot be memory-mapped
            return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"{path}: unsupported VAE file type {suffix!r}; expected one of {', '.join(EXTENSIONS)}.")
