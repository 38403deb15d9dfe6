"""The DiT's expected tensors, and random weights for tests and tiny demo checkpoints.

Loading real weights is :func:`hunyuan_model.checkpoint.load_weights` (from a reader or a state
dict) and, for files, :func:`.loading.load_transformer`.
"""

from __future__ import annotations

import math

import torch

from .config import DiTConfig


def expected_shapes(config: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Tencent key -> shape of every tensor of the DiT described by ``config`` (built on ``meta``)."""
    from .model import HunyuanVideoTransformer

    model = HunyuanVideoTransformer(config, dtype=torch.float32, device="meta")
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


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
