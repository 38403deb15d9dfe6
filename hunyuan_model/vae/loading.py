"""Loading VAE weights through the pack's one weight pipeline (:func:`~..checkpoint.open_checkpoint`).

Any file the readers take (safetensors, ``.pt``/``.ckpt`` with ``weights_only``, GGUF, a diffusers
``AutoencoderKLHunyuanVideo`` folder) in any key layout ``keys.py`` knows; sizes are read from the weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoint import (
    CheckpointError,
    StateDictReader,
    WrongModelError,
    load_weights,
    open_checkpoint,
    plain_tensor,
    wrong_model,
)
from ..identify import VAE_LOADER, ModelKind
from ..latent import LATENT_CHANNELS
from .config import VAEConfig
from .keys import MARKER, canonical_state_dict
from .model import CausalVideoVAE

EXTENSIONS = (".safetensors", ".sft", ".pt", ".pth", ".ckpt", ".bin", ".gguf")


def load_vae(
    path: str | os.PathLike, dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cpu"
) -> CausalVideoVAE:
    """Build the VAE from a weight file in any supported layout (``keys.py``); sizes are read from the weights."""
    reader = open_checkpoint(Path(path), prefixes=(), architecture=None)
    state = canonical_state_dict({key: plain_tensor(reader.load(key)) for key in reader.keys()})
    if state is None:
        raise wrong_model(
            reader.describe(),
            {key: info.shape for key, info in reader.infos().items()},
            "a HunyuanVideo VAE",
            ModelKind.HUNYUAN_VAE,
            VAE_LOADER,
            hint=f"A HunyuanVideo VAE has keys like '{MARKER}' (Tencent's vae/pytorch_model.pt, or "
            "hunyuan_video_vae_bf16.safetensors from kijai or Comfy-Org).",
        )
    try:
        config = VAEConfig.from_state_dict(state)
    except (KeyError, ValueError) as error:
        raise CheckpointError(
            f"{reader.describe()} has VAE weights but not the HunyuanVideo (1.0) VAE's structure ({error}). "
            f"The HunyuanVideo 1.5 and HunyuanImage VAEs are different models."
        ) from None
    if config.latent_channels != LATENT_CHANNELS:
        raise WrongModelError(
            f"{reader.describe()} is a VAE with {config.latent_channels}-channel latents; HunyuanVideo's has "
            f"{LATENT_CHANNELS} (32 is HunyuanVideo 1.5's). Pick hunyuan_video_vae_bf16.safetensors or Tencent's "
            "vae/pytorch_model.pt."
        )
    with torch.device("meta"):
        vae = CausalVideoVAE(config).to(dtype)
    load_weights(vae, StateDictReader(state, str(reader.path)), device=device, linear_weight=lambda key: False)
    return vae.eval().requires_grad_(False)
