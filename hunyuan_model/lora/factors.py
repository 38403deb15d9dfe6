"""One LoRA module's tensors as a low-rank pair: ``delta W = scale * up @ down``.

Every supported adapter type is written exactly as ``up [rows, R] @ down [R, in]`` so that one code
path merges and applies them all:

- LoRA (``lora_up``/``lora_down``, ``lora_B``/``lora_A``, ``lora.up``/``lora.down``; the spellings of
  ComfyUI comfy/weight_adapter/lora.py:92-129): ``up = B``, ``down = A``, ``scale = alpha / rank``,
  ``alpha = rank`` when the file has none (diffusers/peft and diffusion-pipe files carry no alpha;
  musubi-tuner networks/lora.py:93-94 and Tencent's I2V trainer, train_utils.py:436-441, write one).
  Tencent's I2V loader ignores ``.alpha`` (lora_utils.py:30-31), which is the same thing there: its
  trainer always writes ``alpha = rank`` (train_image2video_lora.py:356-361).
- LoHa (``hada_w1_a``...; musubi-tuner networks/loha.py:79-94, 177-178): ``(w1a @ w1b) * (w2a @ w2b)``
  is exactly ``up @ down`` with ``up[o, (a, b)] = w1a[o, a] * w2a[o, b]`` and
  ``down[(a, b), i] = w1b[a, i] * w2b[b, i]`` (rank r1 * r2), ``scale = alpha / r1``.
- LoKr (``lokr_w1``, ``lokr_w2`` or ``lokr_w2_a``/``lokr_w2_b``; musubi-tuner networks/lokr.py:58-66,
  119-126, 216-226): ``kron(w1, w2a @ w2b) = kron(w1, w2a) @ kron(I, w2b)`` and
  ``kron(w1, w2) = kron(w1, I) @ kron(I, w2)``; ``scale = alpha / rank`` of the decomposed factor, 1
  when both are full (ComfyUI comfy/weight_adapter/lokr.py keeps the same rule).

DoRA (``dora_scale``), Tucker cores (``lora_mid``, ``hada_t1``, ``lokr_t2``), full diffs (``diff``)
and bias deltas are not low-rank weight changes of this kind: they are refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

# Suffix after the module name -> role; the first matching suffix wins (longest first).
SUFFIXES: tuple[tuple[str, str], ...] = (
    ("lora_A.default.weight", "down"),
    ("lora_B.default.weight", "up"),
    ("lora_down.weight", "down"),
    ("lora_up.weight", "up"),
    ("lora.down.weight", "down"),
    ("lora.up.weight", "up"),
    ("lora_A.weight", "down"),
    ("lora_B.weight", "up"),
    ("alpha", "alpha"),
    ("hada_w1_a", "hada_w1_a"),
    ("hada_w1_b", "hada_w1_b"),
    ("hada_w2_a", "hada_w2_a"),
    ("hada_w2_b", "hada_w2_b"),
    ("lokr_w1", "lokr_w1"),
    ("lokr_w1_a", "lokr_w1_a"),
    ("lokr_w1_b", "lokr_w1_b"),
    ("lokr_w2", "lokr_w2"),
    ("lokr_w2_a", "lokr_w2_a"),
    ("lokr_w2_b", "lokr_w2_b"),
)
# Known parts of adapter types this pack does not apply, and why (reported with the key).
UNSUPPORTED: dict[str, str] = {
    "dora_scale": "DoRA (weight-decomposed LoRA) is not supported",
    "lora_mid.weight": "LoRA with a Tucker core (lora_mid) is for convolutions",
    "hada_t1": "LoHa with Tucker cores is for convolutions",
    "hada_t2": "LoHa with Tucker cores is for convolutions",
    "lokr_t2": "LoKr with a Tucker core is for convolutions",
    "diff": "a full weight difference is not a LoRA",
    "diff_b": "bias changes are not supported",
    "lora_A.bias": "bias changes are not supported",
    "lora_B.bias": "bias changes are not supported",
}


class FactorError(ValueError):
    """A module's tensors do not form a LoRA (missing part, ranks that disagree)."""


@dataclass(frozen=True)
class LowRank:
    """``delta W = scale * up @ down`` for one LoRA module (factors in the file's float dtype)."""

    up: torch.Tensor  # [rows, R]
    down: torch.Tensor  # [R, in]
    scale: float
    kind: str  # "LoRA", "LoHa", "LoKr"


def split_key(key: str) -> tuple[str, str] | None:
    """``(module, suffix)`` of a LoRA tensor key, or None when its suffix is no known adapter part."""
    for suffix in (*(s for s, _ in SUFFIXES), *UNSUPPORTED):
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1], suffix
    return None


def low_rank(parts: Mapping[str, torch.Tensor]) -> LowRank:
    """The low-rank form of one module's tensors (suffix -> float32 tensor), by adapter type."""
    roles = dict(SUFFIXES)
    named = {roles[suffix]: tensor for suffix, tensor in parts.items() if suffix in roles}
    alpha = named.pop("alpha", None)
    alpha = None if alpha is None else float(alpha.reshape(-1)[0])
    if "up" in named or "down" in named:
        return _lora(named, alpha)
    if any(role.startswith("hada_") for role in named):
        return _loha(named, alpha)
    if any(role.startswith("lokr_") for role in named):
        return _lokr(named, alpha)
    raise FactorError(f"no adapter weights, only {sorted(parts)}")


def _need(named: Mapping[str, torch.Tensor], *roles: str) -> list[torch.Tensor]:
    missing = [role for role in roles if role not in named]
    if missing:
        raise FactorError(f"has {sorted(named)} but not {missing}")
    return [_matrix(named[role], role) for role in roles]


def _matrix(tensor: torch.Tensor, role: str) -> torch.Tensor:
    """A 2-D factor as stored (no copy: a bf16 file's factors stay bf16 views of the file); 1x1
    convolution factors (``[out, in, 1, 1]``) are squeezed."""
    if tensor.ndim == 4 and tensor.shape[2:] == (1, 1):
        tensor = tensor[:, :, 0, 0]
    if tensor.ndim != 2:
        raise FactorError(f"{role} has shape {list(tensor.shape)}, expected a matrix")
    return tensor


def _lora(named: Mapping[str, torch.Tensor], alpha: float | None) -> LowRank:
    up, down = _need(named, "up", "down")
    rank = down.shape[0]
    if up.shape[1] != rank:
        raise FactorError(
            f"rank mismatch: down {list(down.shape)} has rank {rank}, up {list(up.shape)} has {up.shape[1]}"
        )
    return LowRank(up, down, (alpha if alpha is not None else rank) / rank, "LoRA")


def _loha(named: Mapping[str, torch.Tensor], alpha: float | None) -> LowRank:
    w1a, w1b, w2a, w2b = (t.float() for t in _need(named, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
    if w1a.shape[1] != w1b.shape[0] or w2a.shape[1] != w2b.shape[0] or w1a.shape[0] != w2a.shape[0]:
        raise FactorError(
            f"rank mismatch: w1 {list(w1a.shape)} @ {list(w1b.shape)}, w2 {list(w2a.shape)} @ {list(w2b.shape)}"
        )
    up = (w1a[:, :, None] * w2a[:, None, :]).flatten(1)  # [out, r1 * r2]
    down = (w1b[:, None, :] * w2b[None, :, :]).flatten(0, 1)  # [r1 * r2, in]
    rank = w1b.shape[0]
    return LowRank(up, down, (alpha if alpha is not None else rank) / rank, "LoHa")


def _lokr(named: Mapping[str, torch.Tensor], alpha: float | None) -> LowRank:
    rank = None
    if "lokr_w1" in named:
        w1 = _need(named, "lokr_w1")[0].float()
    else:
        w1a, w1b = (t.float() for t in _need(named, "lokr_w1_a", "lokr_w1_b"))
        w1, rank = w1a @ w1b, w1b.shape[0]
    m = w1.shape[1]
    if "lokr_w2" in named:
        w2 = _need(named, "lokr_w2")[0].float()
        up = torch.kron(w1, torch.eye(w2.shape[0]))  # [l k, m k]
        down = torch.kron(torch.eye(m), w2)  # [m k, m n]
    else:
        w2a, w2b = (t.float() for t in _need(named, "lokr_w2_a", "lokr_w2_b"))
        if w2a.shape[1] != w2b.shape[0]:
            raise FactorError(f"rank mismatch: lokr_w2_a {list(w2a.shape)}, lokr_w2_b {list(w2b.shape)}")
        up = torch.kron(w1, w2a)  # [l k, m r]
        down = torch.kron(torch.eye(m), w2b)  # [m r, m n]
        rank = w2b.shape[0]
    scale = 1.0 if rank is None or alpha is None else alpha / rank
    return LowRank(up, down, scale, "LoKr")
