"""What the text encoders hand to the sampler: prompt states, their mask and the pooled vector."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PromptEmbeds:
    """One encoded prompt (or a batch of them).

    ``text_states`` [B, L, D_llm] are LLaVA-Llama-3 hidden states (D_llm = 4096 for the released
    encoder), ``text_mask`` [B, L] is 1 for real tokens and 0 for padding, ``pooled`` [B, D_clip]
    is CLIP-L's pooled output (D_clip = 768).
    """

    text_states: torch.Tensor
    text_mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self) -> None:
        b, length = self.text_states.shape[:2]
        if self.text_states.ndim != 3 or tuple(self.text_mask.shape) != (b, length) or self.pooled.ndim != 2:
            raise ValueError(
                "prompt embeds must be text_states [B, L, D], text_mask [B, L] and pooled [B, D2]; got "
                f"{tuple(self.text_states.shape)}, {tuple(self.text_mask.shape)} and {tuple(self.pooled.shape)}."
            )
        if self.pooled.shape[0] != b:
            raise ValueError(f"pooled has batch {self.pooled.shape[0]} but text_states has batch {b}.")

    @property
    def text_dim(self) -> int:
        return self.text_states.shape[-1]

    @property
    def pooled_dim(self) -> int:
        return self.pooled.shape[-1]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> PromptEmbeds:
        """States and pooled vector moved (and cast, if ``dtype``); the mask keeps its integer type."""
        return PromptEmbeds(
            text_states=self.text_states.to(device=device, dtype=dtype),
            text_mask=self.text_mask.to(device=device),
            pooled=self.pooled.to(device=device, dtype=dtype),
        )


@dataclass
class TextEmbeds:
    """The sampler's conditioning: a positive prompt and, for true CFG, a negative one.

    The released model is guidance-distilled and needs no negative prompt (``cfg_scale`` 1.0);
    ``cfg_scale`` > 1 with a ``negative`` runs two forwards per step.
    """

    positive: PromptEmbeds
    negative: PromptEmbeds | None = None
    cfg_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.cfg_scale < 1.0:
            raise ValueError(f"cfg_scale must be at least 1.0 (1.0 = no true CFG), got {self.cfg_scale}.")
        if self.negative is not None and (
            self.negative.text_dim != self.positive.text_dim or self.negative.pooled_dim != self.positive.pooled_dim
        ):
            raise ValueError("the negative prompt was encoded with different encoders than the positive one.")

    @property
    def uses_cfg(self) -> bool:
        return self.negative is not None and self.cfg_scale > 1.0
