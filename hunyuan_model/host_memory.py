"""Advice to the Linux kernel about large CPU tensors: drop a file view's pages, back fresh buffers
with huge pages. Elsewhere both are no-ops (the result is the same, only slower or larger)."""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys

import torch

_PAGE = mmap.PAGESIZE
_MADV_DONTNEED = 4
_MADV_HUGEPAGE = 14
# Below this, a buffer is usually recycled heap memory whose pages are already in place.
_HUGE_PAGE_MIN_BYTES = 4 << 20


def drop_file_pages(tensor: torch.Tensor) -> None:
    """Let the kernel drop the resident pages of a tensor viewing a private, read-only file mapping.

    The data stays valid: touching it again reads it back from the file. Only whole pages inside
    the tensor are dropped (neighbours may still be in use).
    Never call this on a tensor that lives in anonymous memory: its pages would come back as zeros.
    """
    _advise(tensor, _MADV_DONTNEED)


def empty_huge(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """``torch.empty`` whose CPU memory, when large, the kernel backs with 2 MB pages.

    A large fresh buffer is faulted in page by page when first written; with 4 KB pages that costs
    more than a dequantization's arithmetic (numpy asks for huge pages the same way).
    """
    out = torch.empty(shape, dtype=dtype, device=device)
    if out.device.type == "cpu" and out.numel() * out.element_size() >= _HUGE_PAGE_MIN_BYTES:
        _advise(out, _MADV_HUGEPAGE)
    return out


def _advise(tensor: torch.Tensor, advice: int) -> None:
    if not sys.platform.startswith("linux") or tensor.numel() == 0:
        return
    start = tensor.data_ptr()
    first = -(-start // _PAGE) * _PAGE
    last = (start + tensor.numel() * tensor.element_size()) // _PAGE * _PAGE
    if last > first:
        _libc().madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), advice)


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc
