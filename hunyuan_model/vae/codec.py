"""Decode raw latents to video frames and encode frames to raw latents, tiled, with clear errors.

Frames use ComfyUI's IMAGE convention: ``[B, F, H, W, 3]`` float32 in 0..1 (channels last). Latents
are raw VAE latents ``[B, 16, 1 + k, H/8, W/8]`` float32, as ComfyUI's LATENT holds them; the DiT
works on ``latent * scaling_factor``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import torch

from ..latent import latent_frames, video_frames
from .config import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from .memory import AUTO_LADDER, estimate_bytes
from .model import CausalVideoVAE
from .tiling import OnTile, TilePlan, Tiling, decode_plan, encode_plan, run_tiles

GIB = 1024**3


class VAEOutOfMemoryError(torch.cuda.OutOfMemoryError):
    """The device ran out of memory during a decode or encode; the message names smaller tilings to try.

    A subclass of PyTorch's out-of-memory error (``torch.cuda.OutOfMemoryError`` is ``torch.OutOfMemoryError``
    for every device since torch 2.5), so hosts that handle OOM specially still recognise it.
    """


def decode(
    vae: CausalVideoVAE,
    latent: torch.Tensor,
    tiling: Tiling | None = None,
    on_tile: OnTile | None = None,
    output_device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Raw latent ``[B, C, 1+k, h, w]`` -> frames ``[B, 1+4k, 8h, 8w, 3]`` float32 in 0..1 on ``output_device``.

    Runs on the VAE's device and dtype. ``tiling`` None decodes each video in one piece. ``on_tile(done,
    total)`` is called once before the first tile and after each; raising from it cancels the decode.
    """
    check_latent(latent, vae.config.latent_channels)
    tiling = tiling or Tiling.off()
    b, _, t, h, w = latent.shape
    plan = decode_plan(latent.shape, tiling)
    frames = torch.empty(
        (b, video_frames(t), h * SPATIAL_COMPRESSION, w * SPATIAL_COMPRESSION, 3), device=output_device
    )
    z = latent.to(vae.device, vae.dtype)
    _run(vae.decode_tile, z, frames.permute(0, 4, 1, 2, 3), plan, on_tile, vae, tiling, encode=False)
    return frames.mul_(0.5).add_(0.5).clamp_(0, 1)


def encode(
    vae: CausalVideoVAE,
    frames: torch.Tensor,
    tiling: Tiling | None = None,
    on_tile: OnTile | None = None,
    output_device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Frames ``[B, 1+4k, H, W, 3]`` (or one video ``[1+4k, H, W, 3]``) in 0..1 -> raw latent means
    ``[B, C, 1+k, H/8, W/8]`` float32 on ``output_device``. Tiles move to the VAE's device one at a time."""
    frames = frames.unsqueeze(0) if frames.ndim == 4 else frames
    check_frames(frames)
    tiling = tiling or Tiling.off()
    b, f, h, w, _ = frames.shape
    video = frames.permute(0, 4, 1, 2, 3)  # b c f h w, a view: the pixels stay where they are
    latent_shape = (b, vae.config.latent_channels, latent_frames(f), h // SPATIAL_COMPRESSION, w // SPATIAL_COMPRESSION)
    latent = torch.empty(latent_shape, device=output_device)

    def encode_tile(pixels: torch.Tensor) -> torch.Tensor:
        return vae.encode_tile(pixels.to(vae.device, vae.dtype).mul(2).sub_(1))

    _run(encode_tile, video, latent, encode_plan(video.shape, tiling), on_tile, vae, tiling, encode=True)
    return latent


def _run(
    model: Callable[[torch.Tensor], torch.Tensor],
    source: torch.Tensor,
    out: torch.Tensor,
    plan: TilePlan,
    on_tile: OnTile | None,
    vae: CausalVideoVAE,
    tiling: Tiling,
    encode: bool,
) -> None:
    """Tile every video of the batch, reporting progress; turn an out-of-memory error into advice."""
    total, done = plan.count * source.shape[0], 0

    def tile_done() -> None:
        nonlocal done
        done += 1
        if on_tile is not None:
            on_tile(done, total)

    if on_tile is not None:
        on_tile(0, total)
    out_of_memory = False
    try:
        with torch.inference_mode():
            for i in range(source.shape[0]):
                run_tiles(model, source[i : i + 1], out[i : i + 1], plan, tile_done)
    except torch.cuda.OutOfMemoryError:
        # Raise outside the handler: the caught error's traceback holds the tile's activations.
        out_of_memory = True
    if out_of_memory:
        gc.collect()
        if vae.device.type == "cuda":
            torch.cuda.empty_cache()
        raise VAEOutOfMemoryError(_out_of_memory_advice(vae, tuple(source.shape), tiling, encode))


def _out_of_memory_advice(vae: CausalVideoVAE, shape: tuple[int, ...], tiling: Tiling, encode: bool) -> str:
    def need(t: Tiling) -> int:
        return estimate_bytes(vae.config, shape, t, vae.dtype, encode)

    current = need(tiling)
    smaller = [t for t in AUTO_LADDER if need(t) <= current / 2][:2]
    action = "encoding" if encode else "decoding"
    advice = (
        " or ".join(
            f"tile_size {t.tile_size}, overlap {t.overlap}, temporal_size {t.temporal_size}, "
            f"temporal_overlap {t.temporal_overlap} (about {need(t) / GIB:.1f} GiB)"
            for t in smaller
        )
        if smaller
        else "the smallest tiles (tile_size 128, temporal_size 8) and free memory held by other models"
    )
    return (
        f"out of {vae.device.type.upper()} memory {action} a {list(shape)} tensor with {tiling.describe()} "
        f"(estimated {current / GIB:.1f} GiB per tile in {str(vae.dtype).removeprefix('torch.')}). Try {advice}; "
        f"tiling 'auto' picks tiles from the free memory."
    )


def check_latent(latent: torch.Tensor, channels: int) -> None:
    """Raise a ValueError that says what is wrong with a latent given to the video VAE."""
    if not isinstance(latent, torch.Tensor):
        raise TypeError(f"expected a latent tensor, got {type(latent).__name__}.")
    shape = list(latent.shape)
    if latent.ndim == 4:
        raise ValueError(
            f"this latent has shape {shape}: an image latent [batch, channels, height, width] (SD, SDXL, Flux, SD3), "
            f"not a video latent. HunyuanVideo's VAE decodes [batch, {channels}, frames, height, width], as made by "
            f"HunyuanVideo Empty Latent or a HunyuanVideo sampler."
        )
    if latent.ndim != 5:
        raise ValueError(f"a video latent has 5 dimensions [batch, {channels}, frames, height, width], got {shape}.")
    if latent.shape[1] != channels:
        raise ValueError(
            f"this latent has {latent.shape[1]} channels (shape {shape}); HunyuanVideo's VAE expects {channels}. "
            f"It comes from another model's VAE (e.g. Wan uses 16 or 48, LTX-Video 128, Mochi 12): "
            f"decode it with that model's VAE."
        )


def check_frames(frames: torch.Tensor) -> None:
    """Raise a ValueError that says what is wrong with frames ``[B, F, H, W, 3]`` given to the encoder."""
    shape = list(frames.shape)
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"expected RGB frames [frames, height, width, 3] (ComfyUI IMAGE), got shape {shape}.")
    f, h, w = frames.shape[1:4]
    if (f - 1) % TEMPORAL_COMPRESSION:
        lower = (f - 1) // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION + 1
        raise ValueError(
            f"the VAE encodes 1 + 4k frames (1, 5, 9, ..., 129), got {f}. "
            f"Trim to {lower} frames or pad to {lower + TEMPORAL_COMPRESSION}."
        )
    if h % SPATIAL_COMPRESSION or w % SPATIAL_COMPRESSION:
        raise ValueError(
            f"frame size {w}x{h} must be a multiple of {SPATIAL_COMPRESSION} in both directions (16 to sample "
            f"with the DiT); resize or crop, e.g. to {w // 16 * 16 or 16}x{h // 16 * 16 or 16}."
        )
