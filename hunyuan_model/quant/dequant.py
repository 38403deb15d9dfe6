"""GGUF block dequantization in torch, on whatever device the blocks live on.

Each kernel reads ``blocks [n, type_size]`` (uint8) and writes ``[n, block_size]`` float32 in
the order ggml lays the weights out. The arithmetic follows ggml's reference dequantizers
operation for operation in float32, so results equal the ``gguf`` package's numpy ``dequantize``
bit for bit (tests/test_quant_dequant.py checks every type).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..host_memory import empty_huge
from .ggml_types import BLOCK_LAYOUTS, GGMLType, ggml_type

_FLOAT_VIEWS = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16, GGMLType.BF16: torch.bfloat16}


def dequantize(
    data: torch.Tensor, qtype: GGMLType | int | str, shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The weights held in GGUF ``data`` (raw bytes of any shape) as a ``dtype`` tensor of ``shape``."""
    qtype = ggml_type(qtype)
    layout = BLOCK_LAYOUTS[qtype]
    numel = math.prod(shape)
    raw = data.reshape(-1).view(torch.uint8)
    if numel % layout.block_size or raw.numel() != numel // layout.block_size * layout.type_size:
        raise ValueError(
            f"{raw.numel()} bytes of {qtype.name} data cannot hold a tensor of shape {list(shape)} "
            f"({layout.type_size} bytes per {layout.block_size} weights)."
        )
    if qtype in _FLOAT_VIEWS:
        stored = raw.view(_FLOAT_VIEWS[qtype]).reshape(shape)
        return stored if stored.dtype == dtype else empty_huge(stored.shape, dtype, stored.device).copy_(stored)
    blocks = raw.reshape(-1, layout.type_size)
    out = empty_huge((blocks.shape[0], layout.block_size), dtype, blocks.device)
    _run_in_chunks(_KERNELS[qtype], blocks, out)
    return out.reshape(shape)


def _run_in_chunks(
    kernel: Callable[[torch.Tensor, torch.Tensor], None], blocks: torch.Tensor, out: torch.Tensor
) -> None:
    """Apply ``kernel`` to all blocks, writing ``out``.

    On the CPU, whole-tensor temporaries are fresh memory the kernel must fault in page by page,
    which costs more than the arithmetic; small chunks reuse the allocator's cached memory and stay
    in cache. GPUs take large chunks: few kernel launches, temporaries bounded to tens of MB.
    """
    n, block_size = out.shape
    chunk_weights = _CPU_CHUNK_WEIGHTS if blocks.device.type == "cpu" else _GPU_CHUNK_WEIGHTS
    step = max(1, chunk_weights // block_size)
    scratch = None if out.dtype == torch.float32 else torch.empty(min(step, n), block_size, device=out.device)
    for start in range(0, n, step):
        part = blocks[start : start + step]
        if scratch is None:
            kernel(part, out[start : start + step])
        else:
            kernel(part, scratch[: part.shape[0]])
            out[start : start + step].copy_(scratch[: part.shape[0]])


_CPU_CHUNK_WEIGHTS = 1 << 20
_GPU_CHUNK_WEIGHTS = 1 << 24


def _half(blocks: torch.Tensor, offset: int) -> torch.Tensor:
    """The fp16 field at byte ``offset`` of every block, as float32 ``[n, 1]``."""
    return blocks[:, offset : offset + 2].view(torch.float16).float()


def _fields(packed: torch.Tensor, width: int, group: int) -> torch.Tensor:
    """Unpack ``width``-bit fields in ggml's order: ``[n, m]`` bytes -> ``[n, m * 8 / width]``.

    Every run of ``group`` bytes yields its lowest fields, then the next bits up, and so on. The
    shifts run on 64-bit words (eight bytes at a time); masking each byte keeps the lanes apart.
    """
    n, m = packed.shape
    words = _aligned(packed).view(torch.int64).reshape(n * m // group, group // 8)
    mask = int.from_bytes(bytes([(1 << width) - 1] * 8), "little", signed=True)
    planes = torch.stack([(words >> shift) & mask for shift in range(0, 8, width)], dim=1)
    return planes.view(torch.uint8).reshape(n, -1)


def _aligned(packed: torch.Tensor) -> torch.Tensor:
    """A fresh contiguous copy, so wider views are aligned (a slice of one block is contiguous but offset)."""
    return packed.clone(memory_format=torch.contiguous_format)


def _u32_bits(packed: torch.Tensor) -> torch.Tensor:
    """The 32 bits of a little-endian uint32 per block, lowest first: ``[n, 4]`` -> ``[n, 32]`` of 0/1."""
    table = _BIT_TABLES.get(packed.device)
    if table is None:
        table = _BIT_TABLES[packed.device] = _bit_table(packed.device)
    return torch.index_select(table, 0, packed.reshape(-1).int()).reshape(packed.shape[0], 32)


def _bit_table(device: torch.device) -> torch.Tensor:
    """``[256, 8]``: the bits of each byte value, lowest first."""
    values = torch.arange(256, device=device).unsqueeze(1)
    return ((values >> torch.arange(8, device=device)) & 1).to(torch.uint8)


_BIT_TABLES: dict[torch.device, torch.Tensor] = {}


def _signed(q: torch.Tensor, offset: int) -> torch.Tensor:
    """Unsigned codes below 128 minus ``offset``, as int8 (ggml's zero point); ``q`` is a fresh buffer, reused."""
    return q.view(torch.int8).sub_(offset)


# Kernels write float32 ``out [n, block_size]``: the integer codes are converted into ``out``
# (exact), then scaled in place, the same float32 operations as ggml's float(q) * d (+ m).


def _q8_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(blocks[:, 2:].view(torch.int8)).mul_(_half(blocks, 0))


def _q4_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_signed(_fields(blocks[:, 2:], 4, 16), 8)).mul_(_half(blocks, 0))


def _q4_1(blocks: torch.Tensor, out: torch.Tensor) -> None:
    out.copy_(_fields(blocks[:, 4:], 4, 16)).mul_(_half(blocks, 0)).add_(_half(blocks, 2))


def _q5_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    q = _fields(blocks[:, 6:], 4, 16).bitwise_or_(_u32_bits(blocks[:, 2:6]).bitwise_left_shift_(4))
    out.copy_(_signed(q, 16)).mul_(_half(blocks, 0))


def _q5_1(blocks: torch.Tensor, out: torch.Tensor) -> None:
    q = _fields(blocks[:, 8:], 4, 16).bitwise_or_(_u32_bits(blocks[:, 4:8]).bitwise_left_shift_(4))
    out.copy_(q).mul_(_half(blocks, 0)).add_(_half(blocks, 2))


def _q2_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # scales[16] (low nibble: scale, high nibble: min) | qs[64] | d | dmin
    n = blocks.shape[0]
    scales = blocks[:, :16]
    scale = (_half(blocks, 80) * (scales & 0xF).float()).unsqueeze(-1)
    low = (_half(blocks, 82) * (scales >> 4).float()).unsqueeze(-1)
    out.copy_(_fields(blocks[:, 16:80], 2, 32))
    out.view(n, 16, 16).mul_(scale).sub_(low)


def _q3_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # hmask[32] | qs[64] | scales[12] (16 six-bit values) | d
    n = blocks.shape[0]
    packed = blocks[:, 96:108]
    high_bits = torch.stack([(packed[:, 8:12] >> shift) & 3 for shift in (0, 2, 4, 6)], dim=1).flatten(1)
    six_bit = _fields(packed[:, :8], 4, 8) | (high_bits << 4)
    scale = (_half(blocks, 108) * _signed(six_bit, 32).float()).unsqueeze(-1)
    # A clear hmask bit subtracts 4 (ggml stores the complement).
    minus_four = _fields(blocks[:, :32], 1, 32).bitwise_xor_(1).bitwise_left_shift_(2)
    out.copy_(_fields(blocks[:, 32:96], 2, 32).view(torch.int8).sub_(minus_four.view(torch.int8)))
    out.view(n, 16, 16).mul_(scale)


def _k_scales_and_mins(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eight 6-bit scales and eight 6-bit mins of each Q4_K/Q5_K block, as float32 ``[n, 8, 1]``.

    Bytes 0-3 hold the low 6 bits of scales 0-3 (top 2 bits: high bits of scales 4-7), bytes 4-7
    the same for the mins, bytes 8-11 the low 4 bits of scales 4-7 (low nibble) and mins 4-7 (high
    nibble). Done on 32-bit words, four lanes at a time, stacked word-major (whole-row copies).
    """
    a, b, c = _aligned(packed).view(torch.int32).unbind(1)
    scales = torch.stack([a & 0x3F3F3F3F, (c & 0x0F0F0F0F) | ((a >> 2) & 0x30303030)])
    mins = torch.stack([b & 0x3F3F3F3F, ((c >> 4) & 0x0F0F0F0F) | ((b >> 2) & 0x30303030)])
    return _lanes_to_blocks(scales), _lanes_to_blocks(mins)


def _lanes_to_blocks(words: torch.Tensor) -> torch.Tensor:
    """``[2, n]`` words of four byte lanes -> float32 ``[n, 8, 1]``, lanes of word 0 first."""
    n = words.shape[1]
    return words.view(torch.uint8).view(2, n, 4).float().transpose(0, 1).reshape(n, 8, 1)


def _k_affine(blocks: torch.Tensor, q: torch.Tensor, out: torch.Tensor) -> None:
    """``d * scale * q - dmin * min`` over eight sub-blocks of 32 (Q4_K and Q5_K)."""
    n = blocks.shape[0]
    scales, mins = _k_scales_and_mins(blocks[:, 4:16])
    scale = _half(blocks, 0).unsqueeze(-1) * scales
    low = _half(blocks, 2).unsqueeze(-1) * mins
    out.copy_(q)
    out.view(n, 8, 32).mul_(scale).sub_(low)


def _q4_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d | dmin | scales[12] | qs[128]
    _k_affine(blocks, _fields(blocks[:, 16:], 4, 32), out)


def _q5_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d | dmin | scales[12] | qh[32] | qs[128]
    q = _fields(blocks[:, 48:], 4, 32).bitwise_or_(_fields(blocks[:, 16:48], 1, 32).bitwise_left_shift_(4))
    _k_affine(blocks, q, out)


def _q6_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # ql[128] | qh[64] | scales[16] (int8) | d
    n = blocks.shape[0]
    scale = (_half(blocks, 208) * blocks[:, 192:208].view(torch.int8).float()).unsqueeze(-1)
    q = _fields(blocks[:, :128], 4, 64).bitwise_or_(_fields(blocks[:, 128:192], 2, 32).bitwise_left_shift_(4))
    out.copy_(_signed(q, 32))
    out.view(n, 16, 16).mul_(scale)


_KERNELS: dict[GGMLType, Callable[[torch.Tensor, torch.Tensor], None]] = {
    GGMLType.Q8_0: _q8_0,
    GGMLType.Q4_0: _q4_0,
    GGMLType.Q4_1: _q4_1,
    GGMLType.Q5_0: _q5_0,
    GGMLType.Q5_1: _q5_1,
    GGMLType.Q2_K: _q2_k,
    GGMLType.Q3_K: _q3_k,
    GGMLType.Q4_K: _q4_k,
    GGMLType.Q5_K: _q5_k,
    GGMLType.Q6_K: _q6_k,
}
