"""Checking a state dict against a DiT and materialising a ``meta`` model from it without a second copy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .config import DiTConfig

_PLAIN_FLOATS = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_LISTED = 5


def expected_shapes(config: DiTConfig) -> dict[str, tuple[int, ...]]:
    """Tencent key -> shape of every tensor of the DiT described by ``config`` (built on ``meta``)."""
    from .model import HunyuanVideoTransformer

    model = HunyuanVideoTransformer(config, dtype=torch.float32, device="meta")
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def check_shapes(expected: DiTConfig | Mapping[str, Any], found: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``found`` has exactly the expected keys, each with the expected shape.

    ``expected`` is a config or a key -> shape (or tensor) mapping, e.g. a model's ``state_dict()``;
    ``found`` maps keys to tensors or shapes. The message lists the first few unexpected, missing and
    mis-shaped keys.
    """
    want = expected_shapes(expected) if isinstance(expected, DiTConfig) else _shapes(expected)
    have = _shapes(found)
    unexpected = sorted(have.keys() - want.keys())
    missing = sorted(want.keys() - have.keys())
    mis_shaped = sorted(k for k in have.keys() & want.keys() if have[k] != want[k])
    if not (unexpected or missing or mis_shaped):
        return
    problems = [f"state dict does not fit the HunyuanVideo DiT ({len(want)} tensors expected, {len(have)} found)."]
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {', '.join(unexpected[:_LISTED])}")
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:_LISTED])}")
    if mis_shaped:
        shown = (f"{k} is {list(have[k])}, expected {list(want[k])}" for k in mis_shaped[:_LISTED])
        problems.append(f"{len(mis_shaped)} with the wrong shape: {'; '.join(shown)}")
    raise ValueError("\n  ".join(problems))


def load_weights(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], device: torch.device | str | None = None
) -> torch.nn.Module:
    """Materialise ``model`` (typically built on ``meta``) by assigning ``state_dict``'s tensors to it.

    Keys and shapes are checked first (a clear ``ValueError``, never a partial load). Plain float tensors
    are cast to the dtype of the parameter they replace (e.g. the release's float32 ``final_layer.linear``
    becomes bf16); other dtypes (float8, packed GGUF data) are kept as they are. With ``device`` the
    tensors are moved there one by one. The model then owns the tensors: no second copy is made when
    dtype and device already match.
    """
    current = model.state_dict(keep_vars=True)
    check_shapes(current, state_dict)
    assigned = {}
    for key, tensor in state_dict.items():
        target = current[key].dtype
        if tensor.dtype != target and tensor.dtype in _PLAIN_FLOATS and target in _PLAIN_FLOATS:
            tensor = tensor.to(target)
        assigned[key] = tensor if device is None else tensor.to(device)
    model.load_state_dict(assigned, strict=True, assign=True)
    return model


def _shapes(mapping: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(int(d) for d in (v.shape if hasattr(v, "shape") else v)) for key, v in mapping.items()}


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
