"""The image of image-to-video: pixels fitted to the video size, and its latent as the first frame.

The image is what HunyuanVideo-I2V and SkyReels-V1 start the video from. It is fitted to the video
size the way Tencent's inference fits it (Tencent-Hunyuan/HunyuanVideo-I2V hyvideo/inference.py:814,
844-851: ``convert('RGB')``, resize the short side, centre crop), optionally to Tencent's size bucket
(:func:`bucket_size`), then VAE-encoded as a one-frame video (the distribution's mean, inference.py:856)
and kept as a raw latent ``[B, 16, 1, h, w]``. How each DiT variant takes it is in
:mod:`.sampling.image_to_video`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

RESIZE_MODES = ("crop", "stretch")
# Tencent's --i2v-resolution -> bucket base size (hyvideo/inference.py:805-810).
BUCKET_BASES = {"720p": 960, "540p": 720, "360p": 480}
_BUCKET_STRIDE = 32
_BUCKET_MAX_RATIO = 4.0


@dataclass(eq=False)  # tensors have no single truth value to compare by
class ImageCondition:
    """The first frame's raw VAE latent ``[1 or B, 16, 1, h, w]`` and how the run starts from it.

    ``stability``: start from ``0.999 * noise + 0.001 * image`` in every frame instead of pure
    noise (Tencent's ``--i2v-stability``, hyvideo/diffusion/pipelines/pipeline_hunyuan_video.py:597-605;
    diffusers always does it). Tencent pairs it with flow shift 7, and "dynamic" (off) with 17
    (scripts/run_sample_image2video_*.sh). SkyReels-V1 starts from pure noise either way.
    """

    latent: torch.Tensor
    stability: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.latent, torch.Tensor) or self.latent.ndim != 5 or self.latent.shape[2] != 1:
            found = tuple(self.latent.shape) if isinstance(self.latent, torch.Tensor) else type(self.latent).__name__
            raise ValueError(f"an image condition is one latent frame [B, C, 1, h, w], got {found}.")


def fit_image(image: torch.Tensor, width: int, height: int, resize: str = "crop") -> torch.Tensor:
    """ComfyUI IMAGE ``[N, H, W, C]`` in 0..1 -> ``[N, height, width, 3]`` float32 in 0..1.

    Conversions, as PIL's ``convert('RGB')`` in Tencent's loader does them: an alpha channel is dropped
    (not composited), one grey channel is repeated to three. ``resize``: ``crop`` scales the image to
    cover the video and cuts the centre (Tencent's Resize(short side) + CenterCrop), ``stretch``
    scales each side to fit (the aspect ratio changes). Resizing is bilinear with antialiasing.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}.")
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 2, 3, 4):
        found = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(
            f"the image must be a ComfyUI IMAGE [count, height, width, channels] with 1 (grey), 3 (RGB) or 4 "
            f"(RGBA) channels, got {found}. Load it with Load Image."
        )
    pixels = image.float()
    channels = pixels.shape[-1]
    pixels = pixels[..., :1].expand(*pixels.shape[:-1], 3) if channels in (1, 2) else pixels[..., :3]
    pixels = pixels.permute(0, 3, 1, 2)  # n c h w
    _, _, h, w = pixels.shape
    if (h, w) != (height, width):
        if resize == "crop":
            scale = max(height / h, width / w)
            covered = (max(height, round(h * scale)), max(width, round(w * scale)))
            pixels = F.interpolate(pixels, size=covered, mode="bilinear", antialias=True, align_corners=False)
            top, left = (covered[0] - height) // 2, (covered[1] - width) // 2
            pixels = pixels[:, :, top : top + height, left : left + width]
        else:
            pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return pixels.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def bucket_size(height: int, width: int, resolution: str = "720p") -> tuple[int, int]:
    """Tencent's video size ``(height, width)`` for an image of this size: the bucket of the closest
    aspect ratio on the image's side of square (hyvideo/utils/data_utils.py:37-86, inference.py:817-819).

    Buckets are multiples of 32 with about ``(base / 32)^2`` patches, sides at most 4:1.
    """
    if resolution not in BUCKET_BASES:
        raise ValueError(f"resolution must be one of {tuple(BUCKET_BASES)}, got {resolution!r}.")
    patches = round((BUCKET_BASES[resolution] / _BUCKET_STRIDE) ** 2)
    buckets, a, b = [], patches, 1  # Tencent walks (a, b) from (patches, 1) down; (a, b) is (height, width)
    while a > 0:
        if max(a, b) / min(a, b) <= _BUCKET_MAX_RATIO:
            buckets.append((a * _BUCKET_STRIDE, b * _BUCKET_STRIDE))
        if (b + 1) * a <= patches:
            b += 1
        else:
            a -= 1
    aspect = height / width
    ratios = [round(h / w, 5) for h, w in buckets]
    # A portrait (or square) image takes a bucket no taller than itself, a landscape one a bucket less wide.
    fits = [i for i, r in enumerate(ratios) if (r - aspect <= 0 if aspect >= 1 else r - aspect > 0)]
    return buckets[min(fits, key=lambda i: abs(ratios[i] - aspect))]


def check_condition_fits(condition: ImageCondition, latent: torch.Tensor) -> None:
    """Refuse an image latent whose size or count does not fit the video latent ``[B, C, T, h, w]``."""
    b, c, _, h, w = latent.shape
    cb, cc, _, ch, cw = condition.latent.shape
    if (cc, ch, cw) != (c, h, w) or cb not in (1, b):
        raise ValueError(
            f"the image latent is {tuple(condition.latent.shape)} but the video latent is {tuple(latent.shape)}: "
            f"it must be [1 or {b}, {c}, 1, {h}, {w}]. Make the image condition at the video's size "
            f"({w * 8}x{h * 8}) with HunyuanVideo Image To Video from the same latent."
        )
    if not math.isfinite(condition.latent.abs().max().item()):
        raise ValueError("the image latent contains NaN or infinity; encode the image again.")
