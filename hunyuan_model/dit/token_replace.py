"""First-frame token replacement (HunyuanVideo-I2V's fixed release): two modulations in one sequence.

The first latent frame holds the clean image; its video tokens are modulated with the embedding of
timestep 0 (plus CLIP's vector, no guidance term) while every other token keeps the step's
embedding. Tencent-Hunyuan/HunyuanVideo-I2V hyvideo/modules/models.py:697-709 builds
``token_replace_vec``; the double block splits its image-stream modulation at the first frame's
token count (models.py:148-188, 260-271), the single block its one modulation (models.py:383-397,
455-457); the text stream and the final layer use the step's vector only (models.py:800-801).
diffusers' ``HunyuanVideoTokenReplace*`` blocks (transformer_hunyuan_video.py:197-287, 666-838) do the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import norm_modulate


@dataclass(frozen=True)
class TokenReplaceVec:
    """What the blocks get instead of ``vec`` ``[B, C]`` under token replacement.

    ``vec`` conditions every token but the first frame's ``tokens`` video tokens, which ``first_frame``
    (``time_in(0) + vector_in(pooled)``, ``[B, C]``) conditions.
    """

    vec: torch.Tensor
    first_frame: torch.Tensor
    tokens: int


Mods = tuple[torch.Tensor, ...]
FirstFrame = tuple[Mods, int] | None  # (the first frame's modulation chunks, its token count)


def split_vec(vec: torch.Tensor | TokenReplaceVec) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """``(vec, first_frame_vec or None, first-frame tokens)``."""
    if isinstance(vec, TokenReplaceVec):
        return vec.vec, vec.first_frame, vec.tokens
    return vec, None, 0


def modulate(x: torch.Tensor, mod: Mods, first: FirstFrame, index: int) -> torch.Tensor:
    """``norm_modulate`` with ``mod[index]`` as shift and ``mod[index + 1]`` as scale, the first frame's own."""
    if first is None:
        return norm_modulate(x, mod[index], mod[index + 1])
    first_mod, n = first
    out = torch.empty_like(x)
    out[:, :n] = norm_modulate(x[:, :n], first_mod[index], first_mod[index + 1])
    out[:, n:] = norm_modulate(x[:, n:], mod[index], mod[index + 1])
    return out


def gated_add(x: torch.Tensor, y: torch.Tensor, mod: Mods, first: FirstFrame, index: int) -> torch.Tensor:
    """``x + y * gate`` with ``mod[index]`` as the gate (``y`` is a fresh output, scaled in place)."""
    if first is None:
        return x + y * mod[index].unsqueeze(1)
    first_mod, n = first
    y[:, :n] *= first_mod[index].unsqueeze(1)
    y[:, n:] *= mod[index].unsqueeze(1)
    return x + y
