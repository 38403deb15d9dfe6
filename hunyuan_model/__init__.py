"""HunyuanVideo in plain PyTorch: the public API for scripts and the headless runner.

Nothing here imports ComfyUI. The ComfyUI nodes in ``nodes/`` are thin adapters over these functions.
See the README's "Python API" section for a tour.
"""

from .checkpoint import CheckpointError, open_checkpoint
from .latent import (
    LATENT_CHANNELS,
    VAE_SCALING_FACTOR,
    VideoGeometry,
    empty_latent,
    latent_frames,
    video_frames,
)
from .quant import WeightStorage, keeps_base_precision

__all__ = [
    "CheckpointError",
    "LATENT_CHANNELS",
    "VAE_SCALING_FACTOR",
    "VideoGeometry",
    "WeightStorage",
    "empty_latent",
    "keeps_base_precision",
    "latent_frames",
    "open_checkpoint",
    "video_frames",
]
