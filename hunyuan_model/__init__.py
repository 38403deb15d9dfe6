"""HunyuanVideo in plain PyTorch: the public API for scripts and the headless runner.

Nothing here imports ComfyUI. The ComfyUI nodes in ``nodes/`` are thin adapters over these functions.
See the README's "Python API" section for a tour.
"""

from .latent import (
    LATENT_CHANNELS,
    VAE_SCALING_FACTOR,
    VideoGeometry,
    empty_latent,
    latent_frames,
    video_frames,
)
from .vae import CausalVideoVAE, Tiling, VAEConfig, VAEOutOfMemoryError, auto_tiling, load_vae
from .vae import decode as vae_decode
from .vae import encode as vae_encode

__all__ = [
    "CausalVideoVAE",
    "LATENT_CHANNELS",
    "VAE_SCALING_FACTOR",
    "Tiling",
    "VAEConfig",
    "VAEOutOfMemoryError",
    "VideoGeometry",
    "auto_tiling",
    "empty_latent",
    "latent_frames",
    "load_vae",
    "vae_decode",
    "vae_encode",
    "video_frames",
]
