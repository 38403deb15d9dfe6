"""The DiT a set of tensors fits, its expected tensors, and random weights for tests and tiny demo checkpoints.

Loading real weights is :func:`hunyuan_model.checkpoint.load_weights` (from a reader or a state
dict) and, for files, :func:`.loading.load_transformer`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from ..checkpoint import check_shapes
from .config import DiTConfig
from .model import HunyuanVideoTransformer


def expected_shapes(config: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Tencent key -> shape of every tensor of the DiT described by ``config`` (built on ``meta``)."""
    model = HunyuanVideoTransformer(config, dtype=torch.float32, device="meta")
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def fitting_model(
    shapes: Mapping[str, Any], dtype: torch.dtype = torch.bfloat16, source: str = "the state dict"
) -> HunyuanVideoTransformer:
    """The DiT on ``meta`` whose tensors are exactly ``shapes`` (keys to tensors, sizes or infos), built once.

    The config is inferred (:meth:`DiTConfig.from_state_dict`), the model built, and every key and
    shape compared (:func:`~..checkpoint.check_shapes`, which lists what differs, naming ``source``).
    A loader fills this very model, so config validation and loading build the DiT once.
    """
    model = HunyuanVideoTransformer(DiTConfig.from_state_dict(shapes), dtype=dtype, device="meta")
    check_shapes(model.state_dict(), shapes, source)
    return model


def init_random_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill ``model`` with random weights that make every part matter, for tests and tiny demo checkpoints.

    Matrices get std ``1/sqrt(fan_in)`` (so activations keep their scale and attention is far from
    uniform), norm weights ``1 + 0.5 N(0, 1)``, biases ``0.2 N(0, 1)``; modulation is not zeroed. The
    numbers come from a CPU generator, so a seed gives the same weights on every device.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim > 1:
                values = noise / math.sqrt(param[0].numel())
            elif "norm" in name and name.endswith("weight"):
                values = 1 + 0.5 * noise
            else:
                values = 0.2 * noise
            param.copy_(values)
    return model
