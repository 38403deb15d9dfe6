"""A loaded transformer and where its weights live: what the model loader hands to the sampler.

The sampler never moves weights itself. It enters :meth:`TransformerHandle.running`, and the
handle's :class:`Placement` decides what that means: the whole model moves to the compute device
(:class:`WholeModel`), or blocks are swapped in from the offload device as they run (block swap).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .dit.model import HunyuanVideoTransformer


class Placement(Protocol):
    """Where a transformer's weights are while it runs and between runs."""

    def enter(
        self,
        model: HunyuanVideoTransformer,
        compute_device: torch.device,
        offload_device: torch.device,
        latent_shape: tuple[int, ...],
    ) -> None:
        """Make ``model`` runnable on ``compute_device`` for latents of ``latent_shape``."""

    def exit(self, model: HunyuanVideoTransformer, offload: bool) -> None:
        """Undo :meth:`enter`'s runtime hooks; with ``offload``, move the weights off the compute device."""

    def device_bytes(self, model: HunyuanVideoTransformer, latent_shape: tuple[int, ...]) -> int:
        """Weight bytes this placement keeps on the compute device while running."""


@dataclass
class WholeModel:
    """All weights on the compute device while sampling; afterwards kept there or offloaded."""

    _offload_device: torch.device | None = field(default=None, repr=False)

    def enter(self, model, compute_device, offload_device, latent_shape) -> None:
        self._offload_device = offload_device
        model.to(compute_device)

    def exit(self, model, offload: bool) -> None:
        if offload and self._offload_device is not None:
            model.to(self._offload_device)

    def device_bytes(self, model, latent_shape) -> int:
        return module_bytes(model)


@dataclass
class TransformerHandle:
    """A DiT ready to sample with: the model, its devices and its placement.

    ``description`` says what was loaded (file and format) for logs and errors. ``step_cache``
    (a :class:`~.step_cache.StepCache`) and ``compile`` (a :class:`~.compile_blocks.BlockCompile`) wrap the model's
    runner while the sampler runs (:mod:`.sampling.hooks`); None leaves the model as it is.
    """

    model: HunyuanVideoTransformer
    compute_device: torch.device
    offload_device: torch.device
    placement: Placement = field(default_factory=WholeModel)
    description: str = ""
    after_run: Callable[[TransformerHandle], None] | None = field(default=None, repr=False, compare=False)
    step_cache: Any = None
    compile: Any = None

    @contextlib.contextmanager
    def running(self, latent_shape: tuple[int, ...], offload_after: bool = False) -> Iterator[HunyuanVideoTransformer]:
        """The model, runnable on :attr:`compute_device`, for the duration of the block.

        The placement is undone even when sampling fails or is cancelled, so the handle stays usable.
        Then :attr:`after_run` (if set) is called with the handle: a host such as ComfyUI uses it to take
        the weights left on the compute device into its own memory management.
        """
        self.placement.enter(self.model, self.compute_device, self.offload_device, latent_shape)
        try:
            yield self.model
        finally:
            self.placement.exit(self.model, offload_after)
            if self.after_run is not None:
                self.after_run(self)


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers, in the form they are stored."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def resident_bytes(module: torch.nn.Module, device: torch.device) -> int:
    """Bytes of a module's parameters and buffers that are on ``device`` now."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if same_device(t.device, device))


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device."""
    return a.type == b.type and (a.index or 0) == (b.index or 0)
