"""The sampler node: a HunyuanVideo DiT, encoded prompts and a video latent in, the denoised latent out."""

from __future__ import annotations

import logging

import torch

from ..hunyuan_model.conditioning import TextEmbeds
from ..hunyuan_model.extras import forward_shape
from ..hunyuan_model.handle import TransformerHandle
from ..hunyuan_model.latent import video_frames
from ..hunyuan_model.offload.memory_plan import ModelSizes, Workload, activation_bytes, materializes_scores
from ..hunyuan_model.sampling import SOLVER_NAMES, SamplerSettings, check_inputs, sample
from ..hunyuan_model.sampling.cost import forward_flops, matmul_speed
from . import comfy_env
from .image_to_video import IMAGE_LATENT_KEY, STABILITY_KEY, image_condition_of
from .inputs import embedded_guidance_input, seed_input, shift_input
from .types import EMBEDS, MODEL

log = logging.getLogger("HunyuanVideo")

CATEGORY = "HunyuanVideo/sampling"


class SamplingOutOfMemoryError(torch.cuda.OutOfMemoryError):
    """Out of memory while sampling, with what to change; still PyTorch's out-of-memory error, so ComfyUI
    handles it as one (it unloads its models after an OOM)."""


class HunyuanVideoSampler:
    DISPLAY_NAME = "HunyuanVideo Sampler"
    DESCRIPTION = (
        "Generates a video latent with HunyuanVideo's flow-matching sampler (Euler, or a multistep solver): from "
        "pure noise for text-to-video (denoise 1.0), from an image for image-to-video models (the latent from "
        "HunyuanVideo Image To Video), or from an encoded video for video-to-video (denoise below 1). The "
        "progress bar shows a preview of the first frame; cancelling stops within one transformer block."
    )
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = (
        "The denoised video as raw VAE latents (the form ComfyUI's LATENT holds), for a HunyuanVideo VAE decoder.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT, from HunyuanVideo Model Loader."}),
                "embeds": (
                    EMBEDS,
                    {
                        "tooltip": "The prompt from HunyuanVideo Text Encode (or Load Text Embeds); it also "
                        "carries the negative prompt and cfg_scale used for true CFG."
                    },
                ),
                "latent": (
                    "LATENT",
                    {
                        "tooltip": "The video size: HunyuanVideo Empty Latent (or ComfyUI's EmptyHunyuanLatentVideo) "
                        "for text-to-video, HunyuanVideo Image To Video for image-to-video, or an encoded video with "
                        "denoise below 1 for video-to-video."
                    },
                ),
                "seed": seed_input(
                    "The noise seed; the same seed gives the same video on any GPU or the CPU. "
                    "In a batch, video i uses seed + i, so any of them can be made again alone."
                ),
                "steps": (
                    "INT",
                    {
                        "default": 30,
                        "min": 1,
                        "max": 1000,
                        "tooltip": "Denoising steps, one DiT pass each (two with true CFG). 30 is a good balance; "
                        "Tencent uses 50.",
                    },
                ),
                "shift": shift_input(
                    "Flow shift: how much of the schedule is spent at high noise, where layout and "
                    "motion form. 7.0 is Tencent's value at every resolution; lower (2-5) can suit small videos."
                ),
                "embedded_guidance": embedded_guidance_input(
                    "The guidance the released model was distilled with (one pass per step): higher "
                    "follows the prompt more closely. 6.0 is Tencent's default. Ignored by models without it."
                ),
                "denoise": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.01,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "1.0 = start from pure noise (text-to-video). Below 1 keeps part of the input latent, "
                        "more the lower it is (video-to-video): the last `steps` steps of a schedule of "
                        "steps / denoise steps run.",
                    },
                ),
                "offload_model": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Move the DiT off the GPU when sampling ends (or is cancelled), freeing its memory "
                        "for the VAE decode. Off keeps it there for a faster next run.",
                    },
                ),
            },
            "optional": {
                "sigmas": (
                    "SIGMAS",
                    {
                        "tooltip": "Custom noise levels from a ComfyUI scheduler node (values from 1 down to 0); "
                        "when connected they replace steps, shift and denoise."
                    },
                ),
                "solver": (
                    list(SOLVER_NAMES),
                    {
                        "default": "euler",
                        "tooltip": "How each step follows the model: euler is Tencent's sampler. dpmpp_2m (DPM-Solver++ "
                        "2M) and unipc are second-order multistep solvers at the same cost per step that reuse the "
                        "previous step's prediction; try them at fewer steps than euler (e.g. 20 instead of 30).",
                    },
                ),
            },
        }

    def sample(
        self,
        model: TransformerHandle,
        embeds: TextEmbeds,
        latent: dict,
        seed: int,
        steps: int,
        shift: float,
        embedded_guidance: float,
        denoise: float,
        offload_model: bool,
        sigmas: torch.Tensor | None = None,
        solver: str = "euler",
    ):
        samples = _latent_samples(latent)
        settings = SamplerSettings(
            steps=steps, shift=shift, guidance=embedded_guidance, denoise=denoise, sigmas=sigmas, solver=solver
        )
        image = image_condition_of(latent)
        check_inputs(model, embeds, samples, image)
        _explain_settings(settings, samples)
        shape = forward_shape(model.options, samples.shape)  # one context window's, when windows are on
        batch_cfg = _make_room(model, embeds, shape)
        total = len(settings.schedule()) - 1
        _warn_if_beyond_the_machine(model, embeds, shape, total)
        with comfy_env.Progress(total, "HunyuanVideo sampling") as progress:
            try:
                result = sample(
                    model,
                    embeds,
                    samples,
                    seed,
                    settings,
                    batch_index=latent.get("batch_index"),
                    batch_cfg=batch_cfg,
                    offload_after=offload_model,
                    on_step=lambda done, _, x0: progress.update(done, x0[:1]),
                    image=image,
                    between_modules=comfy_env.check_cancel,
                )
            except torch.cuda.OutOfMemoryError as error:
                raise SamplingOutOfMemoryError(_out_of_memory_advice(samples.shape, embeds)) from error
        kept = {key: value for key, value in latent.items() if key not in (IMAGE_LATENT_KEY, STABILITY_KEY)}
        return ({**kept, "samples": result},)


def _latent_samples(latent: dict) -> torch.Tensor:
    if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor):
        raise ValueError(f"latent must be a LATENT (a dict with 'samples'), got {type(latent).__name__}.")
    if latent.get("noise_mask") is not None:
        raise ValueError(
            "this LATENT carries a noise_mask (from SetLatentNoiseMask or an image-to-video node): the HunyuanVideo "
            "sampler does not do masked (inpainting) sampling. Remove the mask node, or sample with ComfyUI's "
            "native HunyuanVideo model and KSampler."
        )
    return latent["samples"]


def _explain_settings(settings: SamplerSettings, samples: torch.Tensor) -> None:
    if settings.sigmas is not None:
        log.info(
            "HunyuanVideo: %d custom sigmas connected; steps, shift and denoise are not used", len(settings.sigmas)
        )
    elif settings.denoise < 1.0 and not samples.any():
        log.warning(
            "HunyuanVideo: denoise %.2f with an empty (all-zero) latent gives a washed-out video; use 1.0 for "
            "text-to-video, or connect an encoded video.",
            settings.denoise,
        )


def _make_room(handle: TransformerHandle, embeds: TextEmbeds, shape: tuple[int, ...]) -> bool:
    """Ask the host to free memory for the weights still to arrive and one step's activations; returns
    whether true CFG's two prompts fit in one batched forward."""
    device = handle.compute_device
    needed = _needed_bytes(handle, embeds, shape, batch_cfg=True)
    comfy_env.make_room(needed, device, keep=handle)
    if not embeds.uses_cfg:
        return False
    batched = comfy_env.free_memory(device) >= needed
    if not batched:
        log.info("HunyuanVideo: too little free memory to batch CFG; running the two prompts one after the other")
    return batched


def _needed_bytes(handle: TransformerHandle, embeds: TextEmbeds, shape: tuple[int, ...], batch_cfg: bool) -> int:
    """Device bytes a step needs beyond what is there: weights still to arrive and one forward's activations."""
    device = handle.compute_device
    weights = handle.device_bytes(shape)
    workload = Workload(
        (shape[0] * (2 if batch_cfg and embeds.uses_cfg else 1), *shape[1:]),
        text_tokens=_text_tokens(embeds),
        dtype=handle.model.compute_dtype,
        scores=materializes_scores(handle.model.attention_backend, device),
    )
    return weights + activation_bytes(ModelSizes.of(handle.model), workload)


def _text_tokens(embeds: TextEmbeds) -> int:
    return max(p.text_states.shape[1] for p in (embeds.positive, embeds.negative) if p is not None)


# Far beyond the machine: more than twice the free memory, or more than an hour of arithmetic.
_MEMORY_FACTOR, _LONG_S = 2.0, 3600.0


def _warn_if_beyond_the_machine(handle: TransformerHandle, embeds: TextEmbeds, shape: tuple[int, ...], steps: int):
    """Say before the first step when the requested size needs far more memory or time than this device has."""
    device, config = handle.compute_device, handle.model.config
    needed, free = _needed_bytes(handle, embeds, shape, batch_cfg=False), comfy_env.free_memory(device)
    size = f"{shape[0]} video(s) of {video_frames(shape[2])} frames at {shape[4] * 8}x{shape[3] * 8}"
    if needed > _MEMORY_FACTOR * free:
        log.warning(
            "HunyuanVideo: %s needs about %s per step on %s, which has %s free: expect swapping or an out-of-memory "
            "error. Use fewer frames or a smaller size%s.",
            size, _bytes(needed), device, _bytes(free), ", or block swap" if device.type == "cuda" else "",
        )  # fmt: skip
    forwards = steps * (2 if embeds.uses_cfg else 1)
    flops = forwards * forward_flops(config, shape, _text_tokens(embeds))
    speed = matmul_speed(device, handle.model.compute_dtype)
    if flops / speed > _LONG_S:
        log.warning(
            "HunyuanVideo: %s in %d step(s) is about %.0f TFLOP; at the %.0f GFLOP/s this %s does, that is about %s. "
            "Cancel (Ctrl-C, or the cancel button) and use fewer frames, a smaller size or fewer steps%s.",
            size, steps, flops / 1e12, speed / 1e9, device, _duration(flops / speed),
            "" if device.type == "cuda" else ", or run on a GPU (a CUDA build of torch)",
        )  # fmt: skip


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _duration(seconds: float) -> str:
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.0f} hours" if seconds < 2 * 86400 else f"{seconds / 86400:.0f} days"


def _out_of_memory_advice(shape: torch.Size, embeds: TextEmbeds) -> str:
    b, _, t, h, w = shape
    cfg = (
        " True CFG doubles the memory per step: set cfg_scale to 1.0 in the text encoder node."
        if embeds.uses_cfg
        else ""
    )
    return (
        f"the GPU ran out of memory sampling {b} video(s) of {(t - 1) * 4 + 1} frames at {w * 8}x{h * 8}. Use fewer "
        f"frames or a smaller size, enable block swap, or load the model in FP8.{cfg}"
    )
