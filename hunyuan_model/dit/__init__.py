"""The HunyuanVideo diffusion transformer (DiT) in plain PyTorch, with Tencent's state-dict keys."""

from .config import NAMED_CONFIGS, DiTConfig
from .diffusers_keys import diffusers_to_tencent, tencent_to_diffusers
from .embeddings import embedded_guidance
from .model import HunyuanVideoTransformer, run_module
from .weights import check_shapes, expected_shapes, init_random_weights, load_weights

__all__ = [
    "NAMED_CONFIGS",
    "DiTConfig",
    "HunyuanVideoTransformer",
    "check_shapes",
    "diffusers_to_tencent",
    "embedded_guidance",
    "expected_shapes",
    "init_random_weights",
    "load_weights",
    "run_module",
    "tencent_to_diffusers",
]
