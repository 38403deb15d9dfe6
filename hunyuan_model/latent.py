"""Video latent geometry of HunyuanVideo's causal 3D VAE ("884-16c-hy").

A video of ``1 + 4k`` frames at ``H x W`` pixels becomes a latent ``[B, 16, 1 + k, H/8, W/8]``.
The DiT patchifies the latent 2x2 in space, so pixel sizes must be multiples of 16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_all

LATENT_CHANNELS = 16
SPATIAL_COMPRESSION = 8
TEMPORAL_COMPRESSION = 4
# The DiT's 2x2 spatial patch on top of the VAE's 8x: pixel sizes must divide by 16.
PIXEL_ALIGNMENT = 16
# Raw VAE latents times this factor are "model space", what the DiT sees (spec section 4.1).
VAE_SCALING_FACTOR = 0.476986


@dataclass(frozen=True)
class VideoGeometry:
    """A video size in pixels and frames, checked to be one the model can generate."""

    width: int
    height: int
    frames: int
    batch: int = 1

    def __post_init__(self) -> None:
        check_all(
            lambda: _check_multiple("width", self.width, PIXEL_ALIGNMENT),
            lambda: _check_multiple("height", self.height, PIXEL_ALIGNMENT),
            lambda: _check_frames(self.frames),
            lambda: _check_batch(self.batch),
        )

    @property
    def latent_shape(self) -> tuple[int, int, int, int, int]:
        """``(B, C, T, H, W)`` of the raw VAE latent for this video."""
        return (
            self.batch,
            LATENT_CHANNELS,
            latent_frames(self.frames),
            self.height // SPATIAL_COMPRESSION,
            self.width // SPATIAL_COMPRESSION,
        )


def latent_frames(frames: int) -> int:
    """Latent frames for ``frames`` video frames (``1 + 4k -> 1 + k``)."""
    _check_frames(frames)
    return (frames - 1) // TEMPORAL_COMPRESSION + 1


def video_frames(latent_frames: int) -> int:
    """Video frames decoded from ``latent_frames`` latent frames (``1 + k -> 1 + 4k``)."""
    if latent_frames < 1:
        raise ValueError(f"a latent needs at least 1 frame, got {latent_frames}.")
    return (latent_frames - 1) * TEMPORAL_COMPRESSION + 1


def empty_latent(geometry: VideoGeometry, device: torch.device | str = "cpu") -> torch.Tensor:
    """Zeros of the raw-latent shape ``[B, 16, T, H/8, W/8]`` in float32."""
    return torch.zeros(geometry.latent_shape, dtype=torch.float32, device=device)


def _check_multiple(name: str, value: int, multiple: int) -> None:
    if value >= multiple and value % multiple == 0:
        return
    lower = max(multiple, value // multiple * multiple)
    upper = lower if lower >= value else lower + multiple
    nearest = sorted({lower, upper})
    raise ValueError(
        f"{name} must be a positive multiple of {multiple} (the VAE's 8x times the DiT's 2x2 patch), "
        f"got {value}. Nearest valid: {' or '.join(map(str, nearest))}."
    )


def _check_batch(batch: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}.")


def _check_frames(frames: int) -> None:
    if frames >= 1 and (frames - 1) % TEMPORAL_COMPRESSION == 0:
        return
    lower = max(1, (frames - 1) // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION + 1)
    upper = lower if lower >= frames else lower + TEMPORAL_COMPRESSION
    nearest = sorted({lower, upper})
    raise ValueError(
        f"frames must be of the form 4k+1 (1, 5, 9, ..., 129: the VAE compresses time 4x after the first frame), "
        f"got {frames}. Nearest valid: {' or '.join(map(str, nearest))}."
    )
