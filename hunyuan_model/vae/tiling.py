"""Tiled decoding and encoding: overlapping tiles in time and space, blended as Tencent's reference does.

The video is cut along time into tiles of ``temporal_size`` frames (each tile also reads the latent frame
before it as causal context and drops its output), and each of those along height and width into
square tiles of ``tile_size`` pixels. Neighbouring tiles overlap; over the overlap the earlier tile fades
linearly into the later one (Tencent's ``blend_v``/``blend_h``/``blend_t``). Each tile's part that no
later tile covers is final and goes straight into the output, so only strips of the last tiles are
kept, never the whole tiled result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..checks import check_all
from .config import SPATIAL_COMPRESSION as S
from .config import TEMPORAL_COMPRESSION as T

OnTile = Callable[[int, int], None]  # (tiles done, tiles in total)


@dataclass(frozen=True)
class Tiling:
    """Tile sizes in output pixels and frames; a size of 0 turns tiling off along that axis.

    The defaults are Tencent's (256 px tiles overlapping by 64, 64-frame tiles overlapping by 16);
    diffusers' ``enable_tiling`` defaults differ in time (16 frames overlapping by 4).
    """

    tile_size: int = 256
    overlap: int = 64
    temporal_size: int = 64
    temporal_overlap: int = 16

    def __post_init__(self) -> None:
        check_all(
            lambda: _check_axis("tile_size", self.tile_size, "overlap", self.overlap, S, "pixels"),
            lambda: _check_axis(
                "temporal_size", self.temporal_size, "temporal_overlap", self.temporal_overlap, T, "frames"
            ),
        )

    @classmethod
    def off(cls) -> Tiling:
        """Decode or encode in one piece."""
        return cls(0, 0, 0, 0)

    def describe(self) -> str:
        space = f"{self.tile_size} px tiles (overlap {self.overlap})" if self.tile_size else "untiled in space"
        time = (
            f"{self.temporal_size}-frame tiles (overlap {self.temporal_overlap})"
            if self.temporal_size
            else "untiled in time"
        )
        return f"{space}, {time}"


def _check_axis(size_name: str, size: int, overlap_name: str, overlap: int, multiple: int, unit: str) -> None:
    if size == 0 and overlap == 0:
        return
    if size < multiple or size % multiple or overlap % multiple:
        raise ValueError(
            f"{size_name}={size} and {overlap_name}={overlap} must be multiples of {multiple} {unit} "
            f"(the VAE's compression along that axis), with {size_name} at least {multiple}."
        )
    if not 0 <= overlap < size:
        raise ValueError(f"{overlap_name}={overlap} must be at least 0 and smaller than {size_name}={size}.")


@dataclass(frozen=True)
class Span:
    """One tile along one axis: input ``[start, stop)``, whose output after dropping ``drop`` leading
    context elements lands at ``out_start``."""

    start: int
    stop: int
    out_start: int
    drop: int = 0


@dataclass(frozen=True)
class AxisPlan:
    """The tiles along one axis, how many output elements neighbours blend over, and how much of each tile's
    output is final (``None``: all of it; later tiles blend over what they overlap)."""

    spans: tuple[Span, ...]
    blend: int = 0
    keep: int | None = None

    @property
    def largest(self) -> int:
        return max(s.stop - s.start for s in self.spans)


@dataclass(frozen=True)
class TilePlan:
    time: AxisPlan
    height: AxisPlan
    width: AxisPlan

    @property
    def count(self) -> int:
        return len(self.time.spans) * len(self.height.spans) * len(self.width.spans)

    @property
    def largest_tile(self) -> tuple[int, int, int]:
        """``(t, h, w)`` of the largest input tile."""
        return self.time.largest, self.height.largest, self.width.largest


def decode_plan(latent_shape: tuple[int, ...], tiling: Tiling) -> TilePlan:
    """Tiles of a raw latent ``[b c t h w]``, in latent units, with outputs in pixels and frames."""
    t, h, w = latent_shape[-3:]
    spatial = tiling.tile_size > 0 and max(h, w) * S > tiling.tile_size
    temporal = tiling.temporal_size > 0 and t > tiling.temporal_size // T
    tile, stride = tiling.tile_size // S, (tiling.tile_size - tiling.overlap) // S
    space = [_space_axis(n, tile, stride, S, 1, spatial) for n in (h, w)]
    if not temporal:
        return TilePlan(AxisPlan((Span(0, t, 0),)), *space)
    frames, frame_stride = tiling.temporal_size // T, (tiling.temporal_size - tiling.temporal_overlap) // T
    # A tile starting at latent frame i > 0 decodes frame i as if it were a first frame (its output is dropped:
    # it only gives context); its later frames are video frames 4i+1, ... A lone last frame would add nothing.
    spans = tuple(
        Span(i, min(i + frames + 1, t), 0 if i == 0 else T * i + 1, int(i > 0))
        for i in range(0, t, frame_stride)
        if i == 0 or t - i > 1
    )
    return TilePlan(AxisPlan(spans, blend=tiling.temporal_overlap), *space)


def encode_plan(video_shape: tuple[int, ...], tiling: Tiling) -> TilePlan:
    """Tiles of a video ``[b c f h w]``, in pixels and frames, with outputs in latent units."""
    f, h, w = video_shape[-3:]
    spatial = tiling.tile_size > 0 and max(h, w) > tiling.tile_size
    temporal = tiling.temporal_size > 0 and f > tiling.temporal_size
    stride = tiling.tile_size - tiling.overlap
    space = [_space_axis(n, tiling.tile_size, stride, 1, S, spatial) for n in (h, w)]
    if not temporal:
        return TilePlan(AxisPlan((Span(0, f, 0),)), *space)
    frame_stride = tiling.temporal_size - tiling.temporal_overlap
    # A tile starting at frame i > 0 encodes frame i alone as its first latent (dropped: context only); its later
    # latents are latent frames i/4+1, ...
    spans = tuple(
        Span(i, min(i + tiling.temporal_size + 1, f), 0 if i == 0 else i // T + 1, int(i > 0))
        for i in range(0, f, frame_stride)
        if i == 0 or f - i > 1
    )
    return TilePlan(AxisPlan(spans, blend=tiling.temporal_overlap // T), *space)


def _space_axis(size: int, tile: int, stride: int, up: int, down: int, tiled: bool) -> AxisPlan:
    """Square tiles along height or width; outputs are inputs scaled by ``up / down``."""
    if not tiled:
        return AxisPlan((Span(0, size, 0),))
    spans = tuple(Span(i, min(i + tile, size), i * up // down) for i in range(0, size, stride))
    return AxisPlan(spans, blend=(tile - stride) * up // down, keep=stride * up // down)


def run_tiles(
    model: Callable[[torch.Tensor], torch.Tensor],
    source: torch.Tensor,
    out: torch.Tensor,
    plan: TilePlan,
    on_tile: Callable[[], None],
) -> None:
    """Run ``model`` on every tile of ``source [1 c t h w]`` and write the blended result into ``out [1 c' t' h' w']``.

    Order and blending follow the reference: time outermost, then rows, then columns; a tile first blends
    with the (already blended) tile above, then with the one to its left, then with the previous time tile.
    """
    written_end = 0  # output frames so far; the next time tile blends over the tail of these
    for ts in plan.time.spans:
        above: list[torch.Tensor | None] = [None] * len(plan.width.spans)
        for hs in plan.height.spans:
            left = None
            for column, ws in enumerate(plan.width.spans):
                tile = model(source[:, :, ts.start : ts.stop, hs.start : hs.stop, ws.start : ws.stop])
                tile = tile.float()[:, :, ts.drop :]
                _blend(above[column], tile, dim=3, extent=plan.height.blend)
                _blend(left, tile, dim=4, extent=plan.width.blend)
                above[column] = _tail(tile, dim=3, length=plan.height.blend)
                left = _tail(tile, dim=4, length=plan.width.blend)
                tile = _crop(_crop(tile, 3, plan.height.keep), 4, plan.width.keep)
                fade = max(0, min(plan.time.blend, tile.shape[2], written_end - ts.out_start))
                _write(out, tile.to(out.device), (ts.out_start, hs.out_start, ws.out_start), fade)
                on_tile()
        written_end = ts.out_start + tile.shape[2]


def _blend(previous: torch.Tensor | None, tile: torch.Tensor, dim: int, extent: int) -> None:
    """Fade the end of ``previous`` into the start of ``tile`` over up to ``extent`` elements along ``dim``, in place."""
    if previous is None:
        return
    e = min(previous.shape[dim], tile.shape[dim], extent)
    if e == 0:
        return
    weight = _ramp(e, dim, tile)
    tile.narrow(dim, 0, e).mul_(weight).add_(previous.narrow(dim, previous.shape[dim] - e, e) * (1 - weight))


def _write(out: torch.Tensor, tile: torch.Tensor, at: tuple[int, int, int], fade: int) -> None:
    """Put ``tile`` into ``out`` at ``(t, h, w)``, fading over the ``fade`` frames already there."""
    t, h, w = at
    region = out[:, :, t : t + tile.shape[2], h : h + tile.shape[3], w : w + tile.shape[4]]
    if fade:
        weight = _ramp(fade, 2, tile)
        region[:, :, :fade].mul_(1 - weight).add_(tile[:, :, :fade] * weight)
    region[:, :, fade:] = tile[:, :, fade:]


def _ramp(length: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Weights ``0, 1/length, ..., (length-1)/length`` laid out along ``dim`` of a 5-D tensor."""
    shape = [1] * 5
    shape[dim] = length
    return (torch.arange(length, dtype=torch.float32, device=like.device) / length).view(shape)


def _tail(tile: torch.Tensor, dim: int, length: int) -> torch.Tensor | None:
    if length == 0:
        return None
    size = tile.shape[dim]
    return tile.narrow(dim, size - min(length, size), min(length, size)).clone()


def _crop(tile: torch.Tensor, dim: int, keep: int | None) -> torch.Tensor:
    return tile if keep is None else tile.narrow(dim, 0, min(keep, tile.shape[dim]))
