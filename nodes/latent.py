"""Latent nodes: the empty video latent that starts text-to-video."""

from __future__ import annotations

from ..hunyuan_model.latent import VideoGeometry, empty_latent
from .widget_checks import validate

CATEGORY = "HunyuanVideo/latent"


class HunyuanVideoEmptyLatent:
    DISPLAY_NAME = "HunyuanVideo Empty Latent"
    DESCRIPTION = (
        "An all-zero video latent of the right shape for text-to-video. It holds raw VAE latents, "
        "as ComfyUI's native nodes do, so it also works with core samplers and decoders."
    )
    CATEGORY = CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Zeros [batch, 16, (frames-1)/4+1, height/8, width/8].",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": (
                    "INT",
                    {
                        "default": 848,
                        "min": 16,
                        "max": 4096,
                        "step": 16,
                        "tooltip": "Video width in pixels; a multiple of 16. 848x480 and 1280x720 are the trained sizes.",
                    },
                ),
                "height": (
                    "INT",
                    {
                        "default": 480,
                        "min": 16,
                        "max": 4096,
                        "step": 16,
                        "tooltip": "Video height in pixels; a multiple of 16.",
                    },
                ),
                "frames": (
                    "INT",
                    {
                        "default": 73,
                        "min": 1,
                        "max": 1025,
                        "step": 4,
                        "tooltip": "Number of video frames, of the form 4k+1 (1 = a still image, 129 = about 5 s at 24 fps).",
                    },
                ),
                "batch": (
                    "INT",
                    {"default": 1, "min": 1, "max": 64, "tooltip": "How many videos to generate at once."},
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, width, height, frames):
        values = {"width": width, "height": height, "frames": frames}
        return validate(cls.INPUT_TYPES(), values, VideoGeometry)

    def generate(self, width, height, frames, batch):
        geometry = VideoGeometry(width=width, height=height, frames=frames, batch=batch)
        return ({"samples": empty_latent(geometry)},)
