"""Long-video nodes: RIFLEx and context windows set on the model, and extending a video latent."""

from __future__ import annotations

import dataclasses

from ..hunyuan_model.conditioning import TextEmbeds
from ..hunyuan_model.dit.riflex import Riflex
from ..hunyuan_model.extras import ContextWindows, VideoOptions, extend_latent, forward_shape
from ..hunyuan_model.handle import TransformerHandle
from ..hunyuan_model.sampling import SamplerSettings, check_inputs
from . import comfy_env
from .inputs import embedded_guidance_input, seed_input, shift_input
from .sampling import _latent_samples, _make_room
from .types import EMBEDS, MODEL

CATEGORY = "HunyuanVideo/long video"
MAX_FRAMES = 4097


def with_options(model: TransformerHandle, **changes) -> TransformerHandle:
    """A new handle around the same DiT with ``changes`` made to its :class:`VideoOptions` (ComfyUI caches
    the input handle, which must not change)."""
    if not isinstance(model, TransformerHandle):
        raise ValueError(
            f"model must be a loaded HunyuanVideo DiT (from HunyuanVideo Model Loader), got {type(model).__name__}."
        )
    options = dataclasses.replace(model.options or VideoOptions(), **changes)
    return dataclasses.replace(model, options=options)


def latent_frames(video_frames: int) -> int:
    """Latent frames of a clip of ``video_frames`` (the VAE keeps the first frame and 1 of every 4 after)."""
    return (video_frames - 1) // 4 + 1


class HunyuanVideoLongVideo:
    DISPLAY_NAME = "HunyuanVideo Long Video"
    DESCRIPTION = (
        "Settings for videos longer than the 129 frames HunyuanVideo was trained on. RIFLEx slows one temporal "
        "position frequency so that long videos stop repeating themselves; context windows denoise the video in "
        "overlapping pieces of frames and blend them, so memory no longer grows with length. Put it between the "
        "model loader (or block swap) and the sampler."
    )
    CATEGORY = CATEGORY
    FUNCTION = "configure"
    RETURN_TYPES = (MODEL,)
    OUTPUT_TOOLTIPS = ("The same model (not a copy) with these settings; connect it to the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT, from HunyuanVideo Model Loader or Block Swap."}),
                "riflex": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "RIFLEx (thu-ml): for videos past the chosen frequency's period (197 frames with "
                        "the automatic choice), lower that one frequency so the video stays within one turn of it "
                        "and does not loop. Shorter videos are unchanged.",
                    },
                ),
                "riflex_k": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 8,
                        "tooltip": "Which temporal frequency RIFLEx changes (1-8). 0 = automatic: 4 for HunyuanVideo, "
                        "as the RIFLEx paper finds.",
                    },
                ),
                "context_frames": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": MAX_FRAMES,
                        "step": 4,
                        "tooltip": "Frames per context window; 0 = off (the whole video in one piece). 129 is the "
                        "trained length; smaller windows need less memory. Videos this long or shorter run in one.",
                    },
                ),
                "context_overlap": (
                    "INT",
                    {
                        "default": 32,
                        "min": 0,
                        "max": MAX_FRAMES,
                        "step": 4,
                        "tooltip": "Frames shared by neighbouring windows (rounded down to whole latent frames of 4); "
                        "more overlap blends more smoothly and costs more windows. Must be below context_frames.",
                    },
                ),
                "context_weighting": (
                    ["pyramid", "uniform"],
                    {
                        "default": "pyramid",
                        "tooltip": "How overlapping windows are blended: pyramid trusts each window most at its "
                        "middle (smooth seams); uniform averages them equally.",
                    },
                ),
            }
        }

    def configure(self, model, riflex, riflex_k, context_frames, context_overlap, context_weighting):
        context = None
        if context_frames:
            context = ContextWindows(latent_frames(context_frames), context_overlap // 4, context_weighting)
        return (with_options(model, riflex=Riflex(riflex_k or None) if riflex else None, context=context),)


class HunyuanVideoExtend:
    DISPLAY_NAME = "HunyuanVideo Extend Video"
    DESCRIPTION = (
        "Continues a video: generates new frames after the last ones of a video latent, conditioned on them, "
        "and returns the whole video, longer by new_frames. Video-to-video in latent space: the last frames "
        "are kept as they are while the new ones are denoised next to them, and the seam is blended. Encode "
        "a video (IMAGE) with HunyuanVideo VAE Encode first; chain several to build a long video in pieces."
    )
    CATEGORY = CATEGORY
    FUNCTION = "extend"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The input video followed by the new frames, as raw VAE latents, for a HunyuanVideo decoder.",)

    @classmethod
    def INPUT_TYPES(cls):
        def frames(default: int, minimum: int, text: str) -> tuple:
            return ("INT", {"default": default, "min": minimum, "max": MAX_FRAMES, "step": 4, "tooltip": text})

        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT (its long-video and guidance settings apply)."}),
                "embeds": (EMBEDS, {"tooltip": "The prompt for the new frames, from HunyuanVideo Text Encode."}),
                "latent": ("LATENT", {"tooltip": "The video to continue, as HunyuanVideo VAE latents."}),
                "seed": seed_input("The noise seed of the new frames."),
                "new_frames": frames(32, 4, "How many frames to add (a multiple of 4: one latent frame each 4)."),
                "context_frames": frames(
                    16,
                    4,
                    "How many of the video's last frames the new ones are conditioned on (rounded down to whole "
                    "latent frames of 4). More keeps motion and look more consistent and costs more memory.",
                ),
                "blend_frames": frames(
                    8,
                    0,
                    "How many of the context frames, next to the seam, move gradually from the input to what the "
                    "model made of them, hiding the cut. 0 keeps the input frames exactly.",
                ),
                "steps": (
                    "INT",
                    {"default": 30, "min": 1, "max": 1000, "tooltip": "Denoising steps of the new frames."},
                ),
                "shift": shift_input("Flow shift, as in the sampler."),
                "embedded_guidance": embedded_guidance_input("Embedded guidance, as in the sampler."),
                "offload_model": (
                    "BOOLEAN",
                    {"default": True, "tooltip": "Move the DiT off the GPU when done, as in the sampler."},
                ),
            }
        }

    def extend(
        self,
        model: TransformerHandle,
        embeds: TextEmbeds,
        latent: dict,
        seed: int,
        new_frames: int,
        context_frames: int,
        blend_frames: int,
        steps: int,
        shift: float,
        embedded_guidance: float,
        offload_model: bool,
    ):
        samples = _latent_samples(latent)
        check_inputs(model, embeds, samples)
        if new_frames % 4:
            raise ValueError(f"new_frames must be a multiple of 4 (one latent frame holds 4 frames), got {new_frames}.")
        context, blend = context_frames // 4, blend_frames // 4
        if context > samples.shape[2]:
            raise ValueError(
                f"context_frames {context_frames} asks for {context} latent frames, but the video has only "
                f"{samples.shape[2]} ({(samples.shape[2] - 1) * 4 + 1} frames); lower context_frames."
            )
        settings = SamplerSettings(steps=steps, shift=shift, guidance=embedded_guidance)
        b, c, _, h, w = samples.shape
        batch_cfg = _make_room(model, embeds, forward_shape(model.options, (b, c, context + new_frames // 4, h, w)))
        with comfy_env.Progress(steps, "HunyuanVideo extend") as progress:
            result = extend_latent(
                model,
                embeds,
                samples,
                new_frames // 4,
                context,
                blend,
                seed,
                settings,
                batch_cfg=batch_cfg,
                offload_after=offload_model,
                on_step=lambda done, _, x0: progress.update(done, x0[:1, :, -1:]),
            )
        return ({"samples": result},)
