"""The image-to-video node: an image fitted to the video latent, VAE-encoded as its first frame."""

from __future__ import annotations

import torch

from ..hunyuan_model.image_condition import BUCKET_BASES, RESIZE_MODES, ImageCondition, bucket_size, fit_image
from ..hunyuan_model.vae.codec import encode
from . import comfy_env
from .types import VAE
from .vae import _on_device

CATEGORY = "HunyuanVideo/latent"
# Keys of our image condition in a LATENT dict; ComfyUI's nodes carry unknown keys along.
IMAGE_LATENT_KEY = "hyvideo_image_latent"
STABILITY_KEY = "hyvideo_i2v_stability"
SIZES = ("from latent", *(f"{name} bucket" for name in BUCKET_BASES))


def image_condition_of(latent: dict) -> ImageCondition | None:
    """The image condition a LATENT carries (from HunyuanVideo Image To Video), or None."""
    image = latent.get(IMAGE_LATENT_KEY)
    return None if image is None else ImageCondition(image, bool(latent.get(STABILITY_KEY, True)))


class HunyuanVideoImageToVideo:
    DISPLAY_NAME = "HunyuanVideo Image To Video"
    DESCRIPTION = (
        "Starts a video from an image, for HunyuanVideo-I2V (both releases) and SkyReels-V1 I2V transformers: the "
        "image is fitted to the video size, encoded with the VAE and attached to the latent as its first frame. "
        "Connect the output to the HunyuanVideo Sampler's latent."
    )
    CATEGORY = CATEGORY
    FUNCTION = "condition"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = (
        "The video latent (zeros of the chosen size) carrying the image's latent, for the HunyuanVideo Sampler.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (VAE, {"tooltip": "From HunyuanVideo VAE Loader."}),
                "image": (
                    "IMAGE",
                    {
                        "tooltip": "The first frame (Load Image). Alpha is dropped, grey is made RGB; one image for "
                        "every video of the batch, or one per video."
                    },
                ),
                "latent": (
                    "LATENT",
                    {
                        "tooltip": "The video size and length: HunyuanVideo Empty Latent or ComfyUI's "
                        "EmptyHunyuanLatentVideo."
                    },
                ),
                "size": (
                    list(SIZES),
                    {
                        "default": SIZES[0],
                        "tooltip": "from latent: the latent's width and height. 720p/540p/360p bucket: Tencent's "
                        "size for the image's aspect ratio at that resolution (the latent gives frames and batch).",
                    },
                ),
                "resize": (
                    list(RESIZE_MODES),
                    {
                        "default": "crop",
                        "tooltip": "How an image of another shape is fitted: crop = scale to cover and cut the "
                        "centre (as Tencent does); stretch = scale each side (distorts).",
                    },
                ),
                "stability": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "HunyuanVideo-I2V: start from noise with a trace of the image (Tencent's "
                        "'stability', with flow shift 7); off = Tencent's 'dynamic' (more motion, shift 17). "
                        "SkyReels ignores it.",
                    },
                ),
            }
        }

    def condition(self, vae, image, latent, size, resize, stability):
        samples = latent.get("samples") if isinstance(latent, dict) else None
        if not isinstance(samples, torch.Tensor) or samples.ndim != 5:
            found = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(latent).__name__
            raise ValueError(
                f"latent must be a video LATENT [batch, 16, frames, height, width], got {found}: use HunyuanVideo "
                "Empty Latent or EmptyHunyuanLatentVideo."
            )
        if size != SIZES[0]:
            height, width = bucket_size(image.shape[1], image.shape[2], size.removesuffix(" bucket"))
            samples = samples.new_zeros(*samples.shape[:3], height // 8, width // 8)
        b, _, _, h, w = samples.shape
        if image.shape[0] not in (1, b):
            raise ValueError(
                f"the image batch holds {image.shape[0]} images for {b} videos: give one image for all, or one per video."
            )
        pixels = fit_image(image, w * 8, h * 8, resize).unsqueeze(1)  # n 1 h w c: one-frame videos
        comfy_env.log.info(
            "HunyuanVideo image to video: %dx%d image(s) fitted to %dx%d (%s)",
            image.shape[2],
            image.shape[1],
            w * 8,
            h * 8,
            resize,
        )
        image_latent = _on_device(
            vae,
            (pixels.shape[0], 3, 1, h * 8, w * 8),
            "auto",
            None,
            True,
            lambda tiling, progress: encode(vae, pixels, tiling, progress),
        )
        out = {key: value for key, value in latent.items() if key != "noise_mask"}
        return ({**out, "samples": samples, IMAGE_LATENT_KEY: image_latent, STABILITY_KEY: bool(stability)},)
