"""Writing decoded frames to a video file (mp4 H.264 or webm VP9) through PyAV.

The file appears under its final name only when it is complete: frames go to a hidden temporary
file in the same folder, which is renamed at the end, so a crash or a cancel never leaves a half
video that looks finished.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch


@dataclass(frozen=True)
class VideoFormat:
    """A container with the codec and CRF range used for it."""

    container: str
    codec: str
    max_crf: int
    options: tuple[tuple[str, str], ...] = ()


# mp4 needs `use_metadata_tags` to keep arbitrary keys such as "prompt"; `faststart` puts the index
# first so browsers start playing before the whole file has arrived.
VIDEO_FORMATS: dict[str, VideoFormat] = {
    "mp4": VideoFormat("mp4", "libx264", max_crf=51),
    "webm": VideoFormat("webm", "libvpx-vp9", max_crf=63, options=(("row-mt", "1"),)),
}
_CONTAINER_OPTIONS = {"mp4": {"movflags": "+faststart+use_metadata_tags"}}


def check_crf(format: str, crf: int) -> None:
    """Raise ValueError unless ``format`` is known and ``crf`` is in its codec's range."""
    if format not in VIDEO_FORMATS:
        raise ValueError(f"unknown video format {format!r}; expected one of {sorted(VIDEO_FORMATS)}.")
    spec = VIDEO_FORMATS[format]
    if not 0 <= crf <= spec.max_crf:
        raise ValueError(
            f"crf {crf} is outside 0..{spec.max_crf}, the range of {spec.codec} ({format}); "
            f"lower is better quality and bigger files (about 18-23 looks clean)."
        )


def write_video(
    frames: torch.Tensor,
    path: str | os.PathLike,
    fps: float = 24.0,
    format: str = "mp4",
    crf: int = 19,
    metadata: Mapping[str, str] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> Path:
    """Encode ``frames`` ``[F, H, W, C]`` (floats in 0..1, C = 3 or 4) as a video at ``path``.

    Pixels are stored as 8-bit BT.709 yuv420p, the format every player and browser decodes. That
    format needs even sizes, so an odd width or height is padded by repeating the last column or
    row. ``metadata`` becomes container tags (webm stores the keys upper-cased). ``on_frame(done)``
    is called after each frame and may raise to cancel; nothing is left behind then.
    """
    check_crf(format, crf)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.shape[0] == 0:
        raise ValueError(
            f"expected video frames [frames, height, width, 3] (ComfyUI IMAGE), got shape {tuple(frames.shape)}."
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, and not of ComfyUI's "<prefix>_<counter>_" form, so it never counts as a saved file.
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        _encode(frames, str(temporary), fps, VIDEO_FORMATS[format], crf, metadata or {}, on_frame)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _encode(frames, filename, fps, spec, crf, metadata, on_frame) -> None:
    import av
    from av.video.reformatter import Colorspace

    rate = Fraction(round(fps * 1000), 1000)
    height, width = (size + size % 2 for size in frames.shape[1:3])
    with av.open(filename, mode="w", format=spec.container, options=_CONTAINER_OPTIONS.get(spec.container, {})) as out:
        for key, value in metadata.items():
            out.metadata[key] = value
        stream = out.add_stream(spec.codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 0  # VP9 is in constant-quality mode only without a target bitrate
        stream.options = {"crf": str(crf), **dict(spec.options)}
        _tag_bt709(stream.codec_context)
        for index, frame in enumerate(frames):
            rgb = av.VideoFrame.from_ndarray(_to_rgb24(frame), format="rgb24")
            yuv = rgb.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709)
            yuv.pts, yuv.time_base = index, 1 / rate
            out.mux(stream.encode(yuv))
            if on_frame is not None:
                on_frame(index + 1)
        out.mux(stream.encode(None))


def _to_rgb24(frame: torch.Tensor):
    # frame: [H, W, C] floats in 0..1 -> [H', W', 3] uint8 with H', W' even
    rgb = (frame[..., :3].detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if rgb.shape[0] % 2:
        rgb = torch.cat([rgb, rgb[-1:]], dim=0)
    if rgb.shape[1] % 2:
        rgb = torch.cat([rgb, rgb[:, -1:]], dim=1)
    return rgb.numpy()


def _tag_bt709(codec_context) -> None:
    # Untagged video is read as BT.601 by some players and BT.709 by others; say which it is.
    bt709, limited_range = 1, 1
    codec_context.colorspace = codec_context.color_primaries = codec_context.color_trc = bt709
    codec_context.color_range = limited_range
