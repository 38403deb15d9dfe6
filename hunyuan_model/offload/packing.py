"""A module's weights packed into one byte buffer, so that one copy moves them and views bind them.

A swapped module keeps every parameter and buffer, in its stored dtype (bf16, float8, GGUF bytes, the
FP8 scale), as a view into one host buffer (:func:`packed`). Swapping it in copies that buffer into a
device buffer of at least the same size and installs views of it with the same layout
(:meth:`Packed.views`, :meth:`Packed.install`) for the duration of one call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

# Every tensor starts on a multiple of this many bytes: what CUDA's allocator gives each tensor, so
# kernels reading a view see the alignment they would see in a fresh allocation.
ALIGN = 256


@dataclass(frozen=True)
class Entry:
    """Where one parameter or buffer of a packed module sits: its owner, name, byte offset, dtype, shape.

    The owner is held weakly: the pack cache (:data:`_PACKS`) is keyed weakly by the module, and a strong
    reference here would keep a packed module that owns tensors itself, and its page-locked host memory,
    alive forever.
    """

    owner: weakref.ReferenceType[nn.Module]
    name: str
    is_parameter: bool
    offset: int
    dtype: torch.dtype
    shape: torch.Size

    @property
    def nbytes(self) -> int:
        return self.shape.numel() * self.dtype.itemsize

    def table(self) -> dict[str, torch.Tensor | None]:
        owner = self.owner()
        if owner is None:
            raise RuntimeError(f"the module that held {self.name!r} no longer exists")
        return owner._parameters if self.is_parameter else owner._buffers

    def current(self) -> torch.Tensor | None:
        return self.table()[self.name]


def layout(module: nn.Module) -> tuple[list[Entry], int]:
    """The module's tensors (parameters then buffers of each submodule, None skipped) laid end to end."""
    entries, offset = [], 0
    for owner in module.modules():
        tables = ((True, owner._parameters), (False, owner._buffers))
        for is_parameter, table in tables:
            for name, tensor in table.items():
                if tensor is None:
                    continue
                entry = Entry(weakref.ref(owner), name, is_parameter, offset, tensor.dtype, tensor.shape)
                entries.append(entry)
                offset += -(-entry.nbytes // ALIGN) * ALIGN
    return entries, offset


class Packed:
    """A module whose tensors are views into one host buffer, as :func:`packed` left them.

    Only weak references to the views are kept: the module owns the host memory, which goes away with
    its views when something else (``module.to(...)``) replaces them.
    """

    def __init__(self, entries: list[Entry], nbytes: int, views: list[torch.Tensor], pinned: bool) -> None:
        self.entries, self.nbytes, self.pinned = entries, nbytes, pinned
        self._views = [weakref.ref(view) for view in views]
        self._addresses = [(view.device, view.data_ptr()) for view in views]

    def is_installed(self) -> bool:
        """Whether the module still holds this pack's views, on their memory (``module.to()`` keeps a
        Parameter object but gives it new data)."""
        for entry, ref, address in zip(self.entries, self._views, self._addresses):
            view = ref()
            if view is None or entry.owner() is None or entry.current() is not view:
                return False
            if (view.device, view.data_ptr()) != address:
                return False
        return True

    def host_views(self) -> list[torch.Tensor]:
        """The installed host views (strong references, for reinstalling them after a swapped-in call)."""
        return [entry.current() for entry in self.entries]

    def host_buffer(self) -> torch.Tensor:
        """The packed bytes: a uint8 tensor over the host memory the views live in."""
        first = self.entries[0].current()
        start = first.storage_offset() * first.element_size() - self.entries[0].offset
        return torch.empty(0, dtype=torch.uint8, device=first.device).set_(
            first.untyped_storage(), start, (self.nbytes,)
        )

    def views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """Tensors with this pack's layout inside ``buffer`` (uint8, at least :attr:`nbytes` long)."""
        return views_in(self.entries, buffer)

    def install(self, tensors: list[torch.Tensor]) -> None:
        """Point the module's parameters and buffers at ``tensors`` (from :meth:`views` or :meth:`host_views`)."""
        for entry, tensor in zip(self.entries, tensors):
            entry.table()[entry.name] = tensor


_PACKS: weakref.WeakKeyDictionary[nn.Module, Packed] = weakref.WeakKeyDictionary()


def packed(module: nn.Module, host_buffer: Callable[[int], torch.Tensor], pinned: bool) -> Packed:
    """``module`` with its tensors moved into one buffer from ``host_buffer(nbytes)``, or its existing pack.

    An earlier pack is reused while the module still holds its views and its memory is pinned as asked.
    """
    previous = _PACKS.get(module)
    if previous is not None and previous.pinned == pinned and previous.is_installed():
        return previous
    entries, nbytes = layout(module)
    views = views_in(entries, host_buffer(max(nbytes, 1)))
    with torch.no_grad():
        for entry, view in zip(entries, views):
            view.copy_(entry.current())
    pack = Packed(entries, nbytes, views, pinned)
    pack.install(views)
    _PACKS[module] = pack
    return pack


def views_in(entries: list[Entry], buffer: torch.Tensor) -> list[torch.Tensor]:
    """A tensor per entry inside ``buffer`` (uint8), Parameters for parameters."""
    views = []
    for entry in entries:
        view = buffer[entry.offset : entry.offset + entry.nbytes].view(entry.dtype).view(entry.shape)
        views.append(nn.Parameter(view, requires_grad=False) if entry.is_parameter else view)
    return views
