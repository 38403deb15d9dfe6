"""The Euler loop over the flow: ``x <- x + (sigma_next - sigma) * v(x, sigma * 1000)``, in float32."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .schedule import timesteps

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# on_step(steps_done, total_steps, x0): x0 = x - sigma * v, the clean latent the model predicts at this step.
StepCallback = Callable[[int, int, torch.Tensor], None]


def euler_sample(
    velocity: Velocity,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Follow ``velocity`` from noise level ``sigmas[0]`` to ``sigmas[-1]``; one model call per step.

    ``x`` is kept in float32 between steps whatever the model's dtype (as Tencent's scheduler does;
    diffusers rounds it to bf16). ``on_step`` runs after every step with the model-space denoised
    estimate, for previews; an exception raised there (a cancel) stops the loop at once.
    """
    x = x.float()
    sigmas = sigmas.to(x.device, torch.float32)
    steps_t = timesteps(sigmas)
    total = len(sigmas) - 1
    for i in range(total):
        v = velocity(x, steps_t[i])
        x0 = x - sigmas[i] * v if on_step is not None else None
        x = x + v * (sigmas[i + 1] - sigmas[i])
        del v
        if on_step is not None:
            on_step(i + 1, total, x0)
    return x
