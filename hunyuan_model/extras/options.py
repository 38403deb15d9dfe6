"""The long-video and guidance options a HYVIDEO_MODEL can carry, and how a sampling run applies them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..dit.riflex import Riflex
from .context_windows import ContextWindows, WindowedVelocity
from .enhance import EnhanceAVideo
from .runner import PatchRunner
from .skip_layer import SkipLayerGuidance, SkipLayerVelocity


@dataclass(frozen=True)
class VideoOptions:
    """Each option None = off. Nodes add them with ``dataclasses.replace``."""

    riflex: Riflex | None = None
    enhance: EnhanceAVideo | None = None
    skip_layers: SkipLayerGuidance | None = None
    context: ContextWindows | None = None

    def describe(self) -> str:
        parts = [name for name in ("riflex", "enhance", "skip_layers", "context") if getattr(self, name) is not None]
        return ", ".join(parts) or "none"


def forward_shape(options: VideoOptions | None, latent_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The largest latent one forward sees: with context windows, one window of frames."""
    if options is None or options.context is None:
        return tuple(latent_shape)
    b, c, t, h, w = latent_shape
    return (b, c, min(t, options.context.length), h, w)


@contextlib.contextmanager
def applied(options: VideoOptions | None, model, velocity, schedule: torch.Tensor) -> Iterator:
    """``velocity`` (a :class:`~hunyuan_model.sampling.GuidedVelocity` over ``model``) with ``options``
    applied, for the duration of the block; ``schedule`` is the steps' timesteps. No options: the same
    velocity and model, untouched."""
    if options is None:
        yield velocity
        return
    slg = options.skip_layers
    if options.riflex is None and options.enhance is None and slg is None:
        yield _windowed(velocity, options.context)
        return
    if options.riflex is not None:
        options.riflex.index(model.config.rope_theta, model.config.rope_dim_list[0])  # refuse a bad k now
    runner = PatchRunner(model.runner, model.config, schedule, options.riflex, options.enhance)
    with model.using_runner(runner):
        if slg is not None:
            names = slg.names(len(model.double_blocks), len(model.single_blocks))
            velocity = SkipLayerVelocity(velocity, runner, slg, names, schedule)
        yield _windowed(velocity, options.context)


def _windowed(velocity, context: ContextWindows | None):
    return velocity if context is None else WindowedVelocity(velocity, context)
