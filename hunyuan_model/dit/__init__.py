"""The HunyuanVideo diffusion transformer (DiT) in plain PyTorch, with Tencent's state-dict keys,
and its loader for every checkpoint format (:func:`load_transformer`)."""

from .config import NAMED_CONFIGS, DiTConfig
from .diffusers_keys import diffusers_to_tencent, tencent_to_diffusers
from .embeddings import embedded_guidance
from .loading import TransformerFile, load_transformer, open_transformer
from .model import HunyuanVideoTransformer, run_module
from .weights import expected_shapes, init_random_weights

__all__ = [
    "NAMED_CONFIGS",
    "DiTConfig",
    "HunyuanVideoTransformer",
    "TransformerFile",
    "diffusers_to_tencent",
    "embedded_guidance",
    "expected_shapes",
    "init_random_weights",
    "load_transformer",
    "open_transformer",
    "run_module",
    "tencent_to_diffusers",
]
