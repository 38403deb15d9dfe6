"""How each image-to-video DiT variant takes the image latent during sampling (model space throughout).

- ``latent_concat`` (HunyuanVideo-I2V first release): the model reads ``[x | image | mask]``, the image
  latent in frame 0 and zeros after, the mask 1 in frame 0 (Tencent-Hunyuan/HunyuanVideo-I2V
  hyvideo/diffusion/pipelines/pipeline_hunyuan_video.py:974-986, 1017-1018); every frame is stepped.
- ``token_replace`` (fixed release): frame 0 *is* the image latent before every step and only
  frames 1+ are stepped (pipeline_hunyuan_video.py:1013-1014, 1078-1084); here frame 0 starts as the
  image and its velocity is zero, which leaves it exactly the image through any solver.
- ``skyreels_concat`` (SkyReels-V1 I2V): the model reads ``[x | image]``, the image latent in frame 0
  and zeros after, no mask (SkyworkAI/SkyReels-V1 skyreelsinfer/pipelines/pipeline_skyreels_video.py:
  149-157, 347-353); every frame is stepped, from pure noise.

Tencent's "stability" start (:class:`~..image_condition.ImageCondition`) blends 0.1% of the image
into the noise of every frame (pipeline_hunyuan_video.py:597-605).
"""

from __future__ import annotations

import torch

from ..dit.config import DiTConfig
from ..image_condition import ImageCondition, check_condition_fits
from ..latent import VAE_SCALING_FACTOR
from .euler import Velocity

STABILITY_NOISE = 0.999  # a float32 tensor in both references, so is 1 - it


def check_image_condition(config: DiTConfig, image: ImageCondition | None, latent: torch.Tensor) -> None:
    """Refuse an image given to a text-to-video DiT, an image-to-video DiT without one, or a misfit image."""
    if image is not None and not isinstance(image, ImageCondition):
        raise TypeError(f"the image condition must be an ImageCondition, got {type(image).__name__}.")
    if image is not None and not config.is_image_to_video:
        raise ValueError(
            "the latent carries an image condition, but this DiT is text-to-video "
            f"({config.variant}). Load an image-to-video transformer (HunyuanVideo-I2V or SkyReels-V1 I2V), or "
            "give the sampler a latent without an image (HunyuanVideo Empty Latent)."
        )
    if image is None and config.is_image_to_video:
        raise ValueError(
            f"this DiT is {config.variant}: it needs the image it starts from. Connect the sampler's latent to "
            "HunyuanVideo Image To Video (image + VAE + the video latent)."
        )
    if image is not None:
        check_condition_fits(image, latent)


class ImageConditionedVelocity:
    """Wraps a velocity of ``[B, 16, T, h, w]`` latents: builds the variant's model input, masks frame 0."""

    def __init__(self, velocity: Velocity, config: DiTConfig, image_latent: torch.Tensor, frames: int) -> None:
        self.velocity = velocity
        self.replace = config.image_condition == "token_replace"
        self.extra = None
        if not self.replace:
            b, c, _, h, w = image_latent.shape
            first = torch.zeros(b, c, frames, h, w, device=image_latent.device)
            first[:, :, :1] = image_latent
            parts = [first]
            if config.image_condition == "latent_concat":
                mask = torch.zeros(b, 1, frames, h, w, device=image_latent.device)
                mask[:, :, :1] = 1.0
                parts.append(mask)
            self.extra = torch.cat(parts, dim=1)  # b (c [+ 1]) t h w

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.replace:
            v = self.velocity(x, t)  # may be an inference tensor: replaced, not written into
            return torch.cat((torch.zeros_like(v[:, :, :1]), v[:, :, 1:]), dim=2)  # frame 0 stays the image
        return self.velocity(torch.cat((x, self.extra.expand(x.shape[0], -1, -1, -1, -1)), dim=1), t)


def image_to_video_start(
    config: DiTConfig, image: ImageCondition, x: torch.Tensor, noise: torch.Tensor, sigma0: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(start latents, model-space image latent [B, 16, 1, h, w])`` for a run from noise level ``sigma0``.

    ``x`` is the text-to-video start (noise, or noise blended with the input latent below denoise 1).
    """
    image_latent = image.latent.to(x.device, torch.float32).expand(x.shape[0], -1, -1, -1, -1) * VAE_SCALING_FACTOR
    if image.stability and sigma0 >= 1.0 and config.image_condition != "skyreels_concat":
        keep = torch.tensor(STABILITY_NOISE, device=x.device)
        x = noise.to(x.device, torch.float32) * keep + image_latent * (1 - keep)
    if config.image_condition == "token_replace":
        x = x.clone()
        x[:, :, :1] = image_latent
    return x, image_latent
