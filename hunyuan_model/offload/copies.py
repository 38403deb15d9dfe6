"""The copy engine behind block swap: how bytes reach the compute device and how compute waits for them.

One small interface, two implementations, so that the scheduling in :mod:`.block_swap` is the same
everywhere and is tested on the CPU:

- :class:`CudaCopies`: host buffers page-locked, copies issued on a side CUDA stream, each copy
  followed by an event the compute stream waits on, and each copy into a reused device buffer
  waiting for an event recorded after the last compute that read it;
- :class:`DirectCopies`: any other pair of devices (the CPU in tests): copies happen at once on the
  calling thread, waits are nothing.
"""

from __future__ import annotations

import logging
import mmap
from typing import Any, Protocol

import torch

log = logging.getLogger("HunyuanVideo.block_swap")

Ticket = Any  # a torch.cuda.Event, or None where work is already done


class CopyEngine(Protocol):
    device: torch.device
    pinned: bool

    def host_buffer(self, nbytes: int) -> torch.Tensor:
        """A uint8 buffer on the offload device that :meth:`copy` reads from."""

    def device_buffer(self, nbytes: int) -> torch.Tensor:
        """A uint8 buffer on the compute device; :meth:`computed` orders later copies into it after work before it."""

    def copy(self, dst: torch.Tensor, src: torch.Tensor, after: Ticket) -> Ticket:
        """Start copying ``src`` into ``dst`` once ``after`` is done; returns the copy's ticket."""

    def computed(self) -> Ticket:
        """A ticket for all compute issued so far."""

    def wait(self, ticket: Ticket) -> None:
        """Make compute issued from now on wait for ``ticket``."""

    def synchronize(self) -> None:
        """Block until every copy issued so far has finished."""


class DirectCopies:
    """Copies done at once on the calling thread: no streams, nothing to wait for."""

    pinned = False

    def __init__(self, device: torch.device, offload_device: torch.device) -> None:
        self.device, self.offload_device = device, offload_device

    def host_buffer(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, device=self.offload_device)

    def device_buffer(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def copy(self, dst: torch.Tensor, src: torch.Tensor, after: Ticket) -> Ticket:
        dst.copy_(src)
        return None

    def computed(self) -> Ticket:
        return None

    def wait(self, ticket: Ticket) -> None:
        pass

    def synchronize(self) -> None:
        pass


class CudaCopies:
    """Host-to-GPU copies on a side stream, from page-locked memory, ordered against compute by events."""

    pinned = True

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._stream = torch.cuda.Stream(device)

    def host_buffer(self, nbytes: int) -> torch.Tensor:
        return pinned_buffer(nbytes)

    def device_buffer(self, nbytes: int) -> torch.Tensor:
        return torch.empty(nbytes, dtype=torch.uint8, device=self.device)

    def copy(self, dst: torch.Tensor, src: torch.Tensor, after: Ticket) -> Ticket:
        if after is not None:
            self._stream.wait_event(after)
        with torch.cuda.stream(self._stream):
            dst.copy_(src, non_blocking=True)
        done = torch.cuda.Event()
        done.record(self._stream)
        return done

    def computed(self) -> Ticket:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def wait(self, ticket: Ticket) -> None:
        if ticket is not None:
            torch.cuda.current_stream(self.device).wait_event(ticket)

    def synchronize(self) -> None:
        self._stream.synchronize()


def copy_engine(compute_device: torch.device, offload_device: torch.device) -> CopyEngine:
    """:class:`CudaCopies` from the CPU to a CUDA device, else :class:`DirectCopies`."""
    if compute_device.type == "cuda" and offload_device.type == "cpu":
        return CudaCopies(compute_device)
    return DirectCopies(compute_device, offload_device)


# cudaHostRegisterPortable: page-locked for every GPU's context, not only the current device's (the compute
# device need not be the current one when blocks are packed; for another context the copies would be pageable).
_HOST_REGISTER_PORTABLE = 1


class _LockedPages(mmap.mmap):
    """Anonymous memory that is registered with CUDA (page-locked) from :meth:`lock` until it is freed.

    torch's own pinned allocator rounds every allocation up to a power of two (a 680 MB double block
    would take 1 GiB); registering exactly the pages needed wastes nothing.
    """

    address: int | None = None

    def lock(self, address: int) -> bool:
        cudart = torch.cuda.cudart()
        status = cudart.cudaHostRegister(address, len(self), _HOST_REGISTER_PORTABLE)
        if status != cudart.cudaError.success:
            return False
        self.address = address
        return True

    def __del__(self) -> None:
        if self.address is not None:
            try:
                torch.cuda.cudart().cudaHostUnregister(self.address)
            except Exception:  # interpreter shutdown: CUDA may be gone already
                pass


def pinned_buffer(nbytes: int) -> torch.Tensor:
    """A page-locked uint8 CPU buffer of ``nbytes`` (pageable, with a warning, if locking fails).

    The memory lives as long as any view of the returned tensor, and is unlocked before it is freed.
    """
    pages = _LockedPages(-1, nbytes)
    buffer = torch.frombuffer(pages, dtype=torch.uint8)
    if not pages.lock(buffer.data_ptr()):
        _take_cuda_error()
        log.warning(
            "HunyuanVideo block swap: could not page-lock %.2f GB of RAM; copies of swapped blocks will not overlap "
            "with compute (slower, same result).",
            nbytes / 1e9,
        )
    return buffer[:nbytes]


def _take_cuda_error() -> None:
    """A failed CUDA runtime call leaves its error for the next kernel launch to raise; raise it here instead."""
    try:
        torch.ones(1, device="cuda").add_(1)
    except RuntimeError:
        pass
