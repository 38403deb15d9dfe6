"""The image-to-video text node: a prompt read together with the image by LLaVA (HunyuanVideo-I2V)."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ..hunyuan_model.handle import PlacedModel
from ..hunyuan_model.text_encoder.templates import VIDEO_I2V
from ..hunyuan_model.text_encoder.vision import VISION_FILE_ADVICE, LlavaVision, clip_pixels, load_vision
from . import comfy_env
from .files import fingerprint
from .inputs import cfg_scale_input
from .text import encode_with_handle
from .types import EMBEDS, TEXT_ENCODER

CATEGORY = "HunyuanVideo/text"
VISION_EXTENSIONS = (".safetensors", ".sft")


@functools.lru_cache(maxsize=1)
def _vision(path: str, stamp: str, dtype: torch.dtype) -> LlavaVision:
    """The vision tower, read once per file version (``stamp``)."""
    return load_vision(path, dtype)


def image_tokens(vision: LlavaVision, image: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The image's tokens and a black image's (for the negative prompt), on the CPU."""
    pixels = torch.cat((clip_pixels(image[:1]), clip_pixels(torch.zeros_like(image[:1]))))
    with comfy_env.place(vision, device).running(offload_after=True) as tower:
        tokens = tower(pixels.to(device)).cpu()
    return tokens[:1], tokens[1:]


class HunyuanVideoTextImageEncode:
    DISPLAY_NAME = "HunyuanVideo Text + Image Encode"
    DESCRIPTION = (
        "Encodes a prompt for HunyuanVideo-I2V: LLaVA reads the image (through its vision tower) and the prompt "
        "in Tencent's image-to-video template; the image's tokens come first in the result. SkyReels-V1 uses plain "
        "HunyuanVideo Text Encode instead."
    )
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (EMBEDS,)
    OUTPUT_TOOLTIPS = ("The encoded prompt (and negative prompt) with the image, for the HunyuanVideo sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        names = comfy_env.list_models("clip_vision", VISION_EXTENSIONS, include_dirs=True)
        default = next((n for n in names if "llava" in n.lower()), names[0] if names else "")
        return {
            "required": {
                "text_encoder": (TEXT_ENCODER, {"tooltip": "From HunyuanVideo Text Encoder Loader."}),
                "vision_model": (
                    names or [""],
                    {
                        "default": default,
                        "tooltip": "LLaVA's vision tower in models/clip_vision: llava_llama3_vision.safetensors "
                        "(Comfy-Org), or the llava-llama-3-8b-v1_1-transformers folder.",
                    },
                ),
                "image": ("IMAGE", {"tooltip": "The image the video starts from (the same as for Image To Video)."}),
                "prompt": (
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "default": "",
                        "tooltip": "What happens in the video, starting from the image; up to 256 LLM tokens.",
                    },
                ),
                "negative_prompt": (
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "default": "",
                        "tooltip": "Used only when cfg_scale is above 1; read with a black image, as Tencent does.",
                    },
                ),
                "image_interleave": (
                    "INT",
                    {
                        "default": 4,
                        "min": 1,
                        "max": 5,
                        "tooltip": "Keep every n-th of the image's 576 tokens: 4 for HunyuanVideo-I2V's fixed "
                        "(token replace) release, 2 for its first (33-channel) release, as Tencent sets them. Lower "
                        "= more weight on the image.",
                    },
                ),
                "cfg_scale": cfg_scale_input(
                    "True classifier-free guidance: 1.0 = off; above 1 the negative prompt runs too "
                    "(twice the time per step)."
                ),
            }
        }

    @classmethod
    def IS_CHANGED(cls, vision_model, **_):
        return comfy_env.model_fingerprint("clip_vision", vision_model)

    def encode(
        self, text_encoder: PlacedModel, vision_model, image, prompt, negative_prompt, image_interleave, cfg_scale
    ):
        if not vision_model:
            raise ValueError(f"no vision model is chosen: models/clip_vision is empty. {VISION_FILE_ADVICE}.")
        path = comfy_env.resolve_model("clip_vision", vision_model)
        encoder = text_encoder.model
        encoder.load()
        dtype = encoder.llm.get_input_embeddings().weight.dtype
        vision = _vision(str(path), fingerprint(Path(path)), dtype)
        device = text_encoder.compute_device
        tokens = image_tokens(vision, image, device)
        options = {"template": VIDEO_I2V, "interleave": image_interleave}
        return (encode_with_handle(text_encoder, prompt, negative_prompt, cfg_scale, image_tokens=tokens, **options),)
