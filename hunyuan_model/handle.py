"""A loaded model and where its weights live: the one placement abstraction of all three models.

The DiT, the text encoders and the VAE each travel as a :class:`PlacedModel`: the model, its compute and
offload devices, and a :class:`Placement` that decides where the weights are while the model runs and
between runs. Code that runs a model never moves weights itself; it enters :meth:`PlacedModel.running`.
Placements: the whole model on the compute device (:class:`WholeModel`, optionally offloaded afterwards),
the whole model read again for each run and dropped after it (:class:`ReloadEachRun`, the text encoders'
``free``), or the DiT's blocks swapped in from the offload device as they run (``offload.BlockSwap``).
The host (ComfyUI or the standalone runner) is told through :attr:`PlacedModel.after_run`: it sees
what a run left on the compute device and may take it into its own memory management.

A model here is an ``nn.Module`` or anything with ``to(device)``, ``parameters()`` and ``buffers()``
(the text encoder pair).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from .extras.options import VideoOptions


class Placement(Protocol):
    """Where a model's weights are while it runs and between runs."""

    def enter(self, model: Any, compute_device: torch.device, offload_device: torch.device, shape: tuple) -> None:
        """Make ``model`` runnable on ``compute_device`` for inputs of ``shape`` (the DiT: the latent's)."""

    def exit(self, model: Any, offload: bool) -> None:
        """Undo :meth:`enter`'s runtime hooks; with ``offload``, move the weights off the compute device."""

    def device_bytes(self, model: Any, shape: tuple) -> int:
        """Weight bytes this placement keeps on the compute device while running."""


@dataclass
class WholeModel:
    """All weights on the compute device while running; afterwards kept there or offloaded."""

    _offload_device: torch.device | None = field(default=None, repr=False)

    def enter(self, model, compute_device, offload_device, shape) -> None:
        self._offload_device = offload_device
        model.to(compute_device)

    def exit(self, model, offload: bool) -> None:
        if offload and self._offload_device is not None:
            model.to(self._offload_device)

    def device_bytes(self, model, shape) -> int:
        return module_bytes(model)


@dataclass
class ReloadEachRun(WholeModel):
    """:class:`WholeModel` for a model that can read its weights again (``load()`` / ``release()``): they are
    read before each run and dropped after it, so nothing waits in RAM between runs."""

    def enter(self, model, compute_device, offload_device, shape) -> None:
        model.load()
        super().enter(model, compute_device, offload_device, shape)

    def exit(self, model, offload: bool) -> None:
        model.release()


@dataclass
class PlacedModel:
    """A model ready to run: the model, its devices and its placement.

    ``description`` says what was loaded (file and format) for logs and errors.
    """

    model: Any
    compute_device: torch.device
    offload_device: torch.device
    placement: Placement = field(default_factory=WholeModel)
    description: str = ""
    after_run: Callable[[PlacedModel], None] | None = field(default=None, repr=False, compare=False)

    @contextlib.contextmanager
    def running(self, shape: tuple = (), offload_after: bool = False) -> Iterator[Any]:
        """The model, runnable on :attr:`compute_device`, for the duration of the block.

        The placement is undone even when the run fails or is cancelled, so the handle stays usable.
        Then :attr:`after_run` (if set) is called with the handle: a host such as ComfyUI uses it to take
        the weights left on the compute device into its own memory management.
        """
        self.placement.enter(self.model, self.compute_device, self.offload_device, shape)
        try:
            yield self.model
        finally:
            self.placement.exit(self.model, offload_after)
            if self.after_run is not None:
                self.after_run(self)

    def device_bytes(self, shape: tuple = ()) -> int:
        """Weight bytes still to arrive on the compute device for a run on inputs of ``shape``."""
        return max(self.placement.device_bytes(self.model, shape) - resident_bytes(self.model, self.compute_device), 0)

    def resident_bytes(self) -> int:
        """Weight bytes on the compute device now."""
        return resident_bytes(self.model, self.compute_device)


@dataclass
class TransformerHandle(PlacedModel):
    """A placed HunyuanVideo DiT: what the model loader hands to the sampler (and block swap).

    ``options`` are the long-video and guidance extras the sampler applies (:mod:`.extras`; None = none).
    ``step_cache`` (a :class:`~.step_cache.StepCache`) and ``compile`` (a :class:`~.compile_blocks.BlockCompile`)
    wrap the model's runner while the sampler runs (:mod:`.sampling.hooks`); None leaves the model as it is.
    """

    options: VideoOptions | None = None
    step_cache: Any = None
    compile: Any = None


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
