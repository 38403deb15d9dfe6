"""The velocity the sampler follows: the DiT with embedded guidance, and true CFG when asked for."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..conditioning import PromptEmbeds, TextEmbeds
from ..dit.model import HunyuanVideoTransformer


@dataclass
class PromptBatch:
    """The text inputs of one DiT forward, on the compute device.

    ``text_states`` [B, L, D] keep the encoder's dtype (the DiT casts them itself), ``text_mask``
    [B, L] is 1 for real tokens, ``pooled`` [B, D2].
    """

    text_states: torch.Tensor
    text_mask: torch.Tensor
    pooled: torch.Tensor

    @classmethod
    def of(cls, prompt: PromptEmbeds, batch: int, device: torch.device) -> PromptBatch:
        """``prompt`` for ``batch`` videos: one prompt is shared by all, otherwise one prompt per video.

        A shared prompt loses its padding here, so a batch of videos needs no attention mask.
        """
        count = prompt.text_states.shape[0]
        if count not in (1, batch):
            raise ValueError(
                f"the embeds hold {count} prompts but the latent holds {batch} videos: use one prompt, "
                f"or exactly one per video."
            )
        if count == 1:
            real = prompt.text_mask[0] != 0
            prompt = PromptEmbeds(prompt.text_states[:, real], prompt.text_mask[:, real], prompt.pooled)
        prompt = prompt.to(device)
        return cls(
            text_states=prompt.text_states.expand(batch, -1, -1),
            text_mask=prompt.text_mask.expand(batch, -1),
            pooled=prompt.pooled.expand(batch, -1),
        )

    def concat(self, other: PromptBatch) -> PromptBatch:
        """Both batches in one, the shorter text padded with masked zeros."""
        length = max(self.text_states.shape[1], other.text_states.shape[1])

        def pad(batch: PromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
            missing = length - batch.text_states.shape[1]
            return F.pad(batch.text_states, (0, 0, 0, missing)), F.pad(batch.text_mask, (0, missing))

        (states_a, mask_a), (states_b, mask_b) = pad(self), pad(other)
        return PromptBatch(
            text_states=torch.cat((states_a, states_b.to(states_a.dtype))),
            text_mask=torch.cat((mask_a, mask_b.to(mask_a.dtype))),
            pooled=torch.cat((self.pooled, other.pooled.to(self.pooled.dtype))),
        )


class GuidedVelocity:
    """``v(x, t)`` in float32 for model-space latents ``x`` [B, 16, T, H, W] and a timestep ``t`` (0..1000).

    A guidance-distilled model gets the embedded ``guidance`` and runs once per step. With true CFG
    (``embeds.uses_cfg``) the negative prompt runs too and ``v = v_neg + cfg_scale * (v_pos - v_neg)``;
    ``batch_cfg`` runs both in one forward of twice the batch (faster, more memory), otherwise one
    after the other.
    """

    def __init__(
        self,
        model: HunyuanVideoTransformer,
        embeds: TextEmbeds,
        batch: int,
        device: torch.device,
        guidance: float,
        batch_cfg: bool = True,
    ) -> None:
        self.model = model
        self.guidance = guidance if model.config.guidance_embed else None
        self.positive = PromptBatch.of(embeds.positive, batch, device)
        self.negative = PromptBatch.of(embeds.negative, batch, device) if embeds.uses_cfg else None
        self.cfg_scale = embeds.cfg_scale
        self.joint = self.negative.concat(self.positive) if self.negative is not None and batch_cfg else None

    @property
    def forwards_per_step(self) -> int:
        return 1 if self.negative is None else 2

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond, uncond = self.predictions(x, t)
        if uncond is None:
            return cond
        return uncond + self.cfg_scale * (cond - uncond)

    def predictions(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The positive prompt's velocity and the negative prompt's (None without true CFG)."""
        if self.negative is None:
            return self.prompt_velocity(x, t, self.positive), None
        if self.joint is not None:
            uncond, cond = self.prompt_velocity(torch.cat((x, x)), t, self.joint).chunk(2)
        else:
            cond = self.prompt_velocity(x, t, self.positive)
            uncond = self.prompt_velocity(x, t, self.negative)
        return cond, uncond

    def prompt_velocity(self, x: torch.Tensor, t: torch.Tensor, prompts: PromptBatch) -> torch.Tensor:
        """One forward of the DiT on ``prompts``, in float32."""
        velocity = self.model(x, t, prompts.text_states, prompts.text_mask, prompts.pooled, guidance=self.guidance)
        return velocity.float()
