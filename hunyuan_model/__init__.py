"""HunyuanVideo in plain PyTorch: the public API for scripts and the headless runner.

Nothing here imports ComfyUI. The ComfyUI nodes in ``nodes/`` are thin adapters over these functions.
See the README's "Python API" section for a tour.
"""

from .attention import ATTENTION_BACKENDS, installed_backends
from .dit import (
    DiTConfig,
    HunyuanVideoTransformer,
    diffusers_to_tencent,
    load_weights,
    tencent_to_diffusers,
)
from .latent import (
    LATENT_CHANNELS,
    VAE_SCALING_FACTOR,
    VideoGeometry,
    empty_latent,
    latent_frames,
    video_frames,
)
from .sampling import SamplerSettings, flow_sigmas, sample, seeded_noise
from .text_encoder import HunyuanTextEncoder, load_text_encoder
from .text_encoder.embeds_io import load_embeds, save_embeds
from .video_file import VIDEO_FORMATS, write_video

__all__ = [
    "ATTENTION_BACKENDS",
    "DiTConfig",
    "HunyuanVideoTransformer",
    "diffusers_to_tencent",
    "installed_backends",
    "load_weights",
    "tencent_to_diffusers",
    "LATENT_CHANNELS",
    "VAE_SCALING_FACTOR",
    "VideoGeometry",
    "empty_latent",
    "latent_frames",
    "video_frames",
    "VIDEO_FORMATS",
    "write_video",
    "HunyuanTextEncoder",
    "load_text_encoder",
    "load_embeds",
    "save_embeds",
    "SamplerSettings",
    "flow_sigmas",
    "sample",
    "seeded_noise",
]
