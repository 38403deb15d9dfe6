"""A tiny random HunyuanVideo VAE written as Comfy-Org's ``hunyuan_video_vae_bf16.safetensors``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..vae import CausalVideoVAE, VAEConfig
from .formats import write_safetensors_file


def random_vae(seed: int = 0) -> CausalVideoVAE:
    """A :meth:`VAEConfig.tiny` VAE with torch's default initialisation under ``seed``."""
    torch.manual_seed(seed)
    return CausalVideoVAE(VAEConfig.tiny())


def write_vae(vae: torch.nn.Module, path: str | os.PathLike) -> Path:
    """The VAE's state dict in bfloat16, Tencent's keys (as kijai's and Comfy-Org's files)."""
    return write_safetensors_file({key: value.bfloat16() for key, value in vae.state_dict().items()}, path)
