"""HunyuanVideo in plain PyTorch: the public API for scripts and the headless runner.

Nothing here imports ComfyUI. The ComfyUI nodes in ``nodes/`` are thin adapters over these functions.
See the README's "Python API" section for a tour.
"""

from .attention import ATTENTION_BACKENDS, installed_backends
from .checkpoint import CheckpointError, load_weights, open_checkpoint
from .compile_blocks import BlockCompile
from .dit import (
    DiTConfig,
    HunyuanVideoTransformer,
    TransformerFile,
    diffusers_to_tencent,
    load_transformer,
    open_transformer,
    tencent_to_diffusers,
)
from .handle import PlacedModel, Placement, ReloadEachRun, TransformerHandle, WholeModel
from .identify import ModelKind, identify
from .latent import (
    LATENT_CHANNELS,
    VAE_SCALING_FACTOR,
    VideoGeometry,
    empty_latent,
    latent_frames,
    video_frames,
)
from .offload import BlockSwap, ModelSizes, Workload, plan_block_swap
from .quant import WeightStorage, keeps_base_precision
from .sampling import SamplerSettings, flow_sigmas, sample, seeded_noise
from .step_cache import StepCache
from .text_encoder import HunyuanTextEncoder, load_text_encoder
from .text_encoder.embeds_io import load_embeds, save_embeds
from .vae import CausalVideoVAE, Tiling, VAEConfig, VAEOutOfMemoryError, auto_tiling, load_vae
from .vae import decode as vae_decode
from .vae import encode as vae_encode
from .video_file import VIDEO_FORMATS, write_video

__all__ = [
    "ATTENTION_BACKENDS",
    "BlockCompile",
    "BlockSwap",
    "LATENT_CHANNELS",
    "VAE_SCALING_FACTOR",
    "VIDEO_FORMATS",
    "CausalVideoVAE",
    "CheckpointError",
    "DiTConfig",
    "HunyuanTextEncoder",
    "HunyuanVideoTransformer",
    "ModelKind",
    "ModelSizes",
    "PlacedModel",
    "Placement",
    "ReloadEachRun",
    "StepCache",
    "Tiling",
    "TransformerFile",
    "TransformerHandle",
    "VAEConfig",
    "VAEOutOfMemoryError",
    "VideoGeometry",
    "WholeModel",
    "Workload",
    "WeightStorage",
    "auto_tiling",
    "diffusers_to_tencent",
    "empty_latent",
    "installed_backends",
    "identify",
    "keeps_base_precision",
    "latent_frames",
    "load_embeds",
    "load_text_encoder",
    "load_transformer",
    "load_vae",
    "load_weights",
    "open_checkpoint",
    "open_transformer",
    "plan_block_swap",
    "save_embeds",
    "tencent_to_diffusers",
    "vae_decode",
    "vae_encode",
    "video_frames",
    "write_video",
    "SamplerSettings",
    "flow_sigmas",
    "sample",
    "seeded_noise",
]
