"""Extending a video: generate the frames after a latent's last ones, conditioned on them.

The path is video-to-video in latent space (this pack has no image-to-video DiT yet): the sampler runs
on ``[the last `context` latent frames of the video, then `new` latent frames]`` from pure noise, while
the context frames are *held*: their velocity is replaced by the exact flow velocity of their own
noising path, ``noise - clean``, so every solver step keeps them at ``(1 - sigma) clean + sigma noise``
(the model sees them at the current noise level, as in temporal inpainting) and they end equal to the
input. The new frames are denoised attending to them. The seam is then blended: over the last
``blend`` context frames the output moves linearly from the input to what the model made of them, so
the cut to the new frames is not a jump between two predictions.

A video of ``T`` latent frames extended by ``n`` has ``T + n`` latent frames, ``4 n`` more video frames.
"""

from __future__ import annotations

import torch


class HeldFrames:
    """``velocity`` with its first ``clean.shape[2]`` frames held on the path from ``noise`` to ``clean``
    (model-space latents ``[B, C, c, H, W]``)."""

    def __init__(self, velocity, clean: torch.Tensor, noise: torch.Tensor) -> None:
        self.velocity = velocity
        self.path_velocity = noise - clean  # d/dsigma of (1 - sigma) clean + sigma noise
        self.count = clean.shape[2]

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = self.velocity(x, t)  # an inference tensor: not written in place
        return torch.cat((self.path_velocity.to(v.device, v.dtype), v[:, :, self.count :]), dim=2)


def extension_input(latent: torch.Tensor, context: int, new: int) -> torch.Tensor:
    """The sampler's input ``[B, C, context + new, H, W]``: the last ``context`` frames of ``latent``,
    then ``new`` copies of its last frame (sampled from pure noise; they only give the shape)."""
    frames = latent.shape[2]
    if not 1 <= context <= frames:
        raise ValueError(
            f"the video to extend has {frames} latent frames; condition on 1 to {frames} of them, got {context}."
        )
    if new < 1:
        raise ValueError(f"extend by at least 1 latent frame (4 video frames), got {new}.")
    tail = latent[:, :, frames - context :]
    return torch.cat((tail, tail[:, :, -1:].expand(-1, -1, new, -1, -1)), dim=2)


def join_extension(latent: torch.Tensor, sampled: torch.Tensor, context: int, blend: int) -> torch.Tensor:
    """``latent`` followed by the new frames of ``sampled`` (as from :func:`extension_input`), the last
    ``blend`` context frames going linearly from ``latent``'s to ``sampled``'s (the seam)."""
    if not 0 <= blend <= context:
        raise ValueError(f"blend must be from 0 to the {context} context frames, got {blend}.")
    held = latent[:, :, latent.shape[2] - context :].clone()
    if blend:
        # weights 1/(blend+1) .. blend/(blend+1): never all input, never all model at the seam's ends
        w = torch.arange(1, blend + 1, dtype=torch.float32) / (blend + 1)
        w = w.reshape(1, 1, -1, 1, 1)
        seam = slice(context - blend, context)
        held[:, :, seam] = (1 - w) * held[:, :, seam] + w * sampled[:, :, seam].to(held.dtype)
    return torch.cat((latent[:, :, : latent.shape[2] - context], held, sampled[:, :, context:]), dim=2)


def extend_latent(
    handle,
    embeds,
    latent: torch.Tensor,
    new: int,
    context: int,
    blend: int,
    seed: int,
    settings=None,
    **sample_args,
) -> torch.Tensor:
    """``latent`` [B, 16, T, H, W] (raw VAE latents) followed by ``new`` generated latent frames, conditioned
    on its last ``context`` frames with a ``blend``-frame seam; ``[B, 16, T + new, H, W]``. ``settings``
    must start from pure noise (denoise 1.0, the default); other arguments go to :func:`sample`."""
    from ..sampling.sampler import sample  # sampling imports this package: import on use

    if settings is not None and (settings.sigmas is not None or settings.denoise != 1.0):
        raise ValueError("extending samples the new frames from pure noise: use denoise 1.0 and no custom sigmas.")
    start = extension_input(latent, context, new)
    if not 0 <= blend <= context:  # refuse before sampling
        raise ValueError(f"blend must be from 0 to the {context} context frames, got {blend}.")
    sampled = sample(handle, embeds, start, seed, settings, hold_frames=context, **sample_args)
    return join_extension(latent, sampled, context, blend)
