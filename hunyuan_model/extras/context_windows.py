"""Context windows over time: denoise a long latent in overlapping windows of frames and blend them.

Each step, the velocity is computed window by window and every latent frame gets the weighted mean of
the windows covering it, so one forward never sees more than ``length`` latent frames: memory is bounded
by the window, time grows with the number of windows. Each window is a video of its own to the model
(RoPE positions restart at 0), as in ComfyUI's context windows.

Following ComfyUI (comfy/context_windows.py, read, not copied): the windows are its ``static_standard``
schedule (505-521: starts every ``length - overlap`` frames, the last one moved back to end at the last
frame, the same set every step), and the weights its ``flat`` and ``pyramid`` fuse methods (560-573:
1 everywhere, or 1, 2, .. up to the middle and back down, after FreeNoise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

WEIGHTINGS = ("pyramid", "uniform")

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ContextWindows:
    """Windows of ``length`` latent frames overlapping by ``overlap``, blended with ``weighting`` weights."""

    length: int = 17
    overlap: int = 4
    weighting: str = "pyramid"

    def __post_init__(self) -> None:
        if self.length < 1 or not 0 <= self.overlap < self.length:
            raise ValueError(
                f"context windows need a length of at least 1 latent frame and an overlap from 0 to length - 1, "
                f"got length {self.length} and overlap {self.overlap}."
            )
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"context window weighting must be one of {WEIGHTINGS}, got {self.weighting!r}.")

    def windows(self, frames: int) -> list[range]:
        """The windows over ``frames`` latent frames: ranges of at most ``length`` frames covering all."""
        if frames <= self.length:
            return [range(frames)]
        stride = self.length - self.overlap
        starts = list(range(0, frames - self.length, stride)) + [frames - self.length]
        return [range(s, s + self.length) for s in starts]

    def window_weights(self, size: int) -> torch.Tensor:
        """``[size]`` float32 weights of one window's frames, before normalisation."""
        if self.weighting == "uniform":
            return torch.ones(size)
        rank = torch.arange(size, dtype=torch.float32)
        return torch.minimum(rank + 1, size - rank)  # 1, 2, .., middle, .., 2, 1

    def blend_weights(self, frames: int) -> list[tuple[range, torch.Tensor]]:
        """Each window with its per-frame share ``[size]``: at every frame the shares of the windows that
        cover it sum to one."""
        windows = self.windows(frames)
        raw = [self.window_weights(len(w)) for w in windows]
        total = torch.zeros(frames)
        for window, weights in zip(windows, raw):
            total[window.start : window.stop] += weights
        return [(w, weights / total[w.start : w.stop]) for w, weights in zip(windows, raw)]


class WindowedVelocity:
    """``velocity`` evaluated window by window along the frame axis of ``x`` ``[B, C, T, H, W]`` and blended."""

    def __init__(self, velocity: Velocity, windows: ContextWindows) -> None:
        self.velocity, self.windows = velocity, windows

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        plan = self.windows.blend_weights(frames)
        if len(plan) == 1:
            return self.velocity(x, t)
        out = None
        for window, share in plan:
            part = self.velocity(x[:, :, window.start : window.stop].contiguous(), t)
            share = share.to(part.device, part.dtype).reshape(1, 1, -1, 1, 1)
            if out is None:
                out = torch.zeros(x.shape[:2] + (frames,) + x.shape[3:], dtype=part.dtype, device=part.device)
            out[:, :, window.start : window.stop] += part * share
            del part
        return out
