"""The flow-matching schedule: noise levels (sigmas) from 1 (pure noise) down to 0 (the clean video).

A flow model sees ``x_sigma = sigma * noise + (1 - sigma) * clean`` and predicts the velocity
``noise - clean``; its timestep input is ``sigma * 1000``. The schedule is Tencent's
``FlowMatchDiscreteScheduler`` with ``reverse=True`` (spec section 6.1): evenly spaced sigmas bent
towards the noisy end by ``shift``, which spends more steps where the layout of the video forms.
"""

from __future__ import annotations

import torch

TIMESTEP_SCALE = 1000.0
# Custom sigmas may overshoot 1 by float rounding (e.g. after a shift computed in float64).
_SIGMA_SLACK = 1e-6


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """``shift * s / (1 + (shift - 1) * s)``: keeps 0 and 1, moves everything between towards 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_sigmas(steps: int, shift: float = 7.0, denoise: float = 1.0) -> torch.Tensor:
    """``steps + 1`` float32 sigmas, decreasing to 0: one Euler step between each neighbouring pair.

    With ``denoise`` 1 this is ``shift_sigmas(linspace(1, 0, steps + 1), shift)`` in float32, as Tencent
    computes it. With ``denoise`` < 1 (video-to-video) it is the tail of the schedule of
    ``int(steps / denoise)`` steps (ComfyUI's ``BasicScheduler`` rule): ``steps`` steps still run, but
    they start at a sigma below 1, so part of the input latent survives.
    """
    check_schedule_settings(steps, shift, denoise)
    total = steps if denoise >= 1.0 else int(steps / denoise)
    sigmas = shift_sigmas(torch.linspace(1.0, 0.0, total + 1, dtype=torch.float32), shift)
    return sigmas[-(steps + 1) :]


def timesteps(sigmas: torch.Tensor) -> torch.Tensor:
    """The DiT's timestep input for each step: ``sigma * 1000`` for all sigmas but the last, in float32."""
    return sigmas[:-1].float() * TIMESTEP_SCALE


def check_schedule_settings(steps: int, shift: float, denoise: float) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, got {steps!r}.")
    if not shift > 0:
        raise ValueError(f"shift must be above 0 (1.0 = no shift, 7.0 = HunyuanVideo's default), got {shift}.")
    if not 0.0 < denoise <= 1.0:
        raise ValueError(
            f"denoise must be above 0 and at most 1 (1.0 = start from pure noise), got {denoise}. "
            "For text-to-video use 1.0; below 1 keeps part of the input latent (video-to-video)."
        )


def check_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """Custom sigmas (ComfyUI's ``SIGMAS``) checked for a flow model, as a float32 CPU tensor.

    They must be a 1-D run of at least two values in [0, 1] that never increases. The last value
    need not be 0: a run that stops early leaves a partly noisy latent (as ComfyUI's SplitSigmas does).
    """
    sigmas = torch.as_tensor(sigmas).detach().to("cpu", torch.float32)
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(
            f"sigmas must be a 1-D list of at least 2 noise levels (steps + 1), got shape {tuple(sigmas.shape)}."
        )
    if not torch.isfinite(sigmas).all():
        raise ValueError(f"sigmas contain NaN or infinity: {sigmas.tolist()}.")
    if sigmas.min() < 0 or sigmas.max() > 1 + _SIGMA_SLACK:
        raise ValueError(
            f"sigmas for HunyuanVideo run from 1 (noise) to 0 (clean), got values from {sigmas.min():.4g} to "
            f"{sigmas.max():.4g}. Schedulers made for SD-style models (Karras, Exponential, VP with sigma_max "
            "above 1) do not fit a flow model: set their sigma_max to 1, or leave sigmas unconnected."
        )
    if (sigmas[1:] > sigmas[:-1]).any():
        raise ValueError(f"sigmas must never increase from one step to the next, got {sigmas.tolist()}.")
    if sigmas[0] == sigmas[-1]:
        raise ValueError(f"sigmas start and end at the same level {sigmas[0]:.4g}: there is nothing to denoise.")
    return sigmas.clamp(max=1.0)
