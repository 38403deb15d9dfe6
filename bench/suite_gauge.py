"""Timing, peak memory and emulated smaller cards on one device, for ``gpu_suite.py``.

A card of ``G`` GB is emulated as the vram guide defines it (``tools/vram_guide.py``): ``G - 2`` GiB are
free for the process (the rest is the desktop, the CUDA context and ComfyUI's reserve). On CUDA,
``torch.cuda.set_per_process_memory_fraction`` caps PyTorch's caching allocator at that many bytes
(the CUDA context lies outside the allocator, as on a real card it lies in the 2 GiB), and
``free_under(cap)`` is what a planner sees as free: the cap less what the process has allocated.
On the CPU (the suite's ``--dry-run``) nothing is capped or measured; plans still see the cap.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch

GIB = 1 << 30
RESERVED_GIB = 2  # as tools/vram_guide.py


def card_free_bytes(card_gb: int) -> int:
    return (card_gb - RESERVED_GIB) * GIB


class Gauge:
    """Synchronising timer, peak-memory reader and allocator cap for ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], object]) -> tuple[object, float]:
        """``fn()`` and its wall seconds, with the device idle before and after."""
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        return result, time.perf_counter() - start

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> int:
        return torch.cuda.memory_allocated(self.device) if self.cuda else 0

    def peaks(self) -> dict[str, int]:
        """Peak allocated (live tensors) and reserved (what the allocator took from the card) since :meth:`reset_peak`."""
        if not self.cuda:
            return {}
        return {
            "peak_allocated": torch.cuda.max_memory_allocated(self.device),
            "peak_reserved": torch.cuda.max_memory_reserved(self.device),
        }

    def release(self) -> None:
        """Return cached blocks to the card, so the next measurement starts from live tensors only."""
        if self.cuda:
            torch.cuda.empty_cache()

    @contextlib.contextmanager
    def capped(self, cap_bytes: int) -> Iterator[None]:
        """The allocator limited to ``cap_bytes`` (CUDA) for the duration of the block."""
        if not self.cuda:
            yield
            return
        self.release()
        total = torch.cuda.get_device_properties(self.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total), self.device)
        try:
            yield
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            self.release()

    def free_under(self, cap_bytes: int) -> Callable[[torch.device], int]:
        """A ``free_memory`` function for ``BlockSwap``: the cap less what is allocated now."""
        return lambda device: cap_bytes - self.allocated()
