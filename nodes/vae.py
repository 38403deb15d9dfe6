"""VAE nodes: load HunyuanVideo's causal 3D VAE, decode latents to frames, encode frames to latents."""

from __future__ import annotations

import torch

from ..hunyuan_model.vae import (
    EXTENSIONS,
    Tiling,
    auto_tiling,
    check_frames,
    check_latent,
    decode,
    encode,
    estimate_bytes,
    load_vae,
)
from . import comfy_env
from .types import VAE
from .widget_checks import validate

CATEGORY = "HunyuanVideo/vae"
PRECISIONS = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
TILING_MODES = ("auto", "manual", "off")


class HunyuanVideoVAELoader:
    DISPLAY_NAME = "HunyuanVideo VAE Loader"
    DESCRIPTION = (
        "Loads HunyuanVideo's causal 3D VAE from the vae folder: hunyuan_video_vae_bf16.safetensors (kijai, "
        "Comfy-Org), Tencent's vae/pytorch_model.pt, or a diffusers AutoencoderKLHunyuanVideo file. "
        "The layout is detected from the weights."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (VAE,)
    OUTPUT_TOOLTIPS = ("The VAE, for HunyuanVideo VAE Decode and HunyuanVideo VAE Encode.",)

    @classmethod
    def INPUT_TYPES(cls):
        names = comfy_env.list_models("vae", EXTENSIONS)
        return {
            "required": {
                "vae_name": (
                    names,
                    {
                        # models/vae holds every model's VAE: start on HunyuanVideo's, not the first by name.
                        "default": next((n for n in names if "hunyuan" in n.lower()), names[0] if names else ""),
                        "tooltip": "VAE weight file in models/vae (.safetensors or Tencent's .pt).",
                    },
                ),
                "precision": (
                    list(PRECISIONS),
                    {
                        "default": "bf16",
                        "tooltip": "Compute precision. bf16 is the default; fp16 is what Tencent runs; fp32 is "
                        "exact but needs twice the memory.",
                    },
                ),
            }
        }

    @classmethod
    def IS_CHANGED(cls, vae_name, **_):
        return comfy_env.model_fingerprint("vae", vae_name)

    def load(self, vae_name, precision):
        path = comfy_env.resolve_model("vae", vae_name)
        return (load_vae(path, PRECISIONS[precision], comfy_env.offload_device()),)


def _tiling_inputs() -> dict:
    return {
        "tiling": (
            list(TILING_MODES),
            {
                "default": "auto",
                "tooltip": "auto: the largest tiles that fit in the free memory (untiled when everything fits). "
                "manual: the four sizes below. off: in one piece (needs tens of GB at 720p).",
            },
        ),
        "tile_size": (
            "INT",
            {"default": 256, "min": 32, "max": 4096, "step": 16, "tooltip": "manual: tile width and height in pixels."},
        ),
        "overlap": (
            "INT",
            {
                "default": 64,
                "min": 0,
                "max": 4096,
                "step": 16,
                "tooltip": "manual: pixels neighbouring tiles share and blend over; smaller than tile_size.",
            },
        ),
        "temporal_size": (
            "INT",
            {"default": 64, "min": 4, "max": 4096, "step": 4, "tooltip": "manual: frames per tile, a multiple of 4."},
        ),
        "temporal_overlap": (
            "INT",
            {
                "default": 16,
                "min": 0,
                "max": 4096,
                "step": 4,
                "tooltip": "manual: frames neighbouring tiles blend over; a multiple of 4, smaller than temporal_size.",
            },
        ),
    }


def _validate_tiling(tiling, tile_size, overlap, temporal_size, temporal_overlap):
    values = {
        "tiling": tiling,
        "tile_size": tile_size,
        "overlap": overlap,
        "temporal_size": temporal_size,
        "temporal_overlap": temporal_overlap,
    }
    return validate({"required": _tiling_inputs()}, values, _check_manual_tiling)


def _check_manual_tiling(tiling, **sizes) -> None:
    if tiling == "manual":  # otherwise the sizes are not used
        Tiling(**sizes)


class _TileProgress:
    """Progress over tiles; the bar is made on the first report, which carries the total."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = comfy_env.Progress(total, self.label)
        self.bar.update(done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _on_device(vae, shape, mode: str, manual: Tiling | None, encoding: bool, work):
    """Run ``work(tiling, on_tile)`` with the VAE placed on the compute device (offloaded afterwards), the
    tiling chosen for ``mode``."""
    placed = comfy_env.place(vae)
    device = placed.compute_device
    wanted = manual or Tiling.off()
    comfy_env.make_room(placed.device_bytes() + estimate_bytes(vae.config, shape, wanted, vae.dtype, encoding), device)
    progress = _TileProgress("HunyuanVideo VAE encode" if encoding else "HunyuanVideo VAE decode")
    with placed.running(shape, offload_after=True):
        try:
            if mode == "auto":
                tiling = auto_tiling(vae.config, shape, vae.dtype, comfy_env.free_memory(device), encoding)
            else:
                tiling = wanted
            comfy_env.log.info("HunyuanVideo VAE %s: %s", "encode" if encoding else "decode", tiling.describe())
            return work(tiling, progress)
        finally:
            progress.close()


class HunyuanVideoVAEDecode:
    DISPLAY_NAME = "HunyuanVideo VAE Decode"
    DESCRIPTION = (
        "Decodes a HunyuanVideo latent to video frames, in overlapping tiles so that it fits in memory. Takes raw "
        "latents as ComfyUI's samplers and native nodes keep them; native VAE Decode (Tiled) can decode ours too."
    )
    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The frames [frames, height, width, 3] in 0..1; batched videos follow one another.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (VAE, {"tooltip": "From HunyuanVideo VAE Loader."}),
                "samples": ("LATENT", {"tooltip": "A HunyuanVideo latent [batch, 16, frames, height, width]."}),
                **_tiling_inputs(),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, tiling, tile_size, overlap, temporal_size, temporal_overlap):
        return _validate_tiling(tiling, tile_size, overlap, temporal_size, temporal_overlap)

    def decode(self, vae, samples, tiling, tile_size, overlap, temporal_size, temporal_overlap):
        latent = samples["samples"]
        check_latent(latent, vae.config.latent_channels)
        manual = Tiling(tile_size, overlap, temporal_size, temporal_overlap) if tiling == "manual" else None
        frames = _on_device(
            vae, tuple(latent.shape), tiling, manual, False, lambda t, progress: decode(vae, latent, t, progress)
        )
        return (frames.reshape(-1, *frames.shape[2:]),)


class HunyuanVideoVAEEncode:
    DISPLAY_NAME = "HunyuanVideo VAE Encode"
    DESCRIPTION = (
        "Encodes video frames (an IMAGE batch of 1 + 4k frames, sides multiples of 8) to a HunyuanVideo latent, "
        "for video-to-video or image-to-video. A single image is a one-frame video."
    )
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The raw latent [1, 16, (frames-1)/4+1, height/8, width/8] (the distribution's mean).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (VAE, {"tooltip": "From HunyuanVideo VAE Loader."}),
                "pixels": ("IMAGE", {"tooltip": "The frames of one video, in order: 1, 5, 9, ... 4k+1 of them."}),
                **_tiling_inputs(),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, tiling, tile_size, overlap, temporal_size, temporal_overlap):
        return _validate_tiling(tiling, tile_size, overlap, temporal_size, temporal_overlap)

    def encode(self, vae, pixels, tiling, tile_size, overlap, temporal_size, temporal_overlap):
        # b f h w c: the IMAGE batch is one video's frames; an alpha channel is dropped, as core VAE Encode does.
        video = pixels[..., :3].unsqueeze(0)
        check_frames(video)
        shape = (1, 3) + tuple(video.shape[1:4])
        manual = Tiling(tile_size, overlap, temporal_size, temporal_overlap) if tiling == "manual" else None
        latent = _on_device(vae, shape, tiling, manual, True, lambda t, progress: encode(vae, video, t, progress))
        return ({"samples": latent},)


NODES = [HunyuanVideoVAELoader, HunyuanVideoVAEDecode, HunyuanVideoVAEEncode]
