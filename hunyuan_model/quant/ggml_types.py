"""The GGUF (ggml) tensor types this pack can dequantize, and a by-name refusal of every other type.

A quantized ggml row is a run of fixed-size blocks; each block packs ``block_size`` weights into
``type_size`` bytes. The layouts are ggml's (``ggml-common.h``); the ids are the values stored in
GGUF files. The ``gguf`` package is not imported here: it is only needed to read files.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

QK_K = 256  # weights per super-block of the K types


class GGMLType(IntEnum):
    """Supported ggml tensor types, with their ids in GGUF files."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    BF16 = 30


@dataclass(frozen=True)
class BlockLayout:
    block_size: int  # weights per block
    type_size: int  # bytes per block


BLOCK_LAYOUTS: dict[GGMLType, BlockLayout] = {
    GGMLType.F32: BlockLayout(1, 4),
    GGMLType.F16: BlockLayout(1, 2),
    GGMLType.BF16: BlockLayout(1, 2),
    GGMLType.Q4_0: BlockLayout(32, 2 + 16),
    GGMLType.Q4_1: BlockLayout(32, 2 + 2 + 16),
    GGMLType.Q5_0: BlockLayout(32, 2 + 4 + 16),
    GGMLType.Q5_1: BlockLayout(32, 2 + 2 + 4 + 16),
    GGMLType.Q8_0: BlockLayout(32, 2 + 32),
    GGMLType.Q2_K: BlockLayout(QK_K, QK_K // 16 + QK_K // 4 + 2 + 2),
    GGMLType.Q3_K: BlockLayout(QK_K, QK_K // 8 + QK_K // 4 + 12 + 2),
    GGMLType.Q4_K: BlockLayout(QK_K, 2 + 2 + 12 + QK_K // 2),
    GGMLType.Q5_K: BlockLayout(QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2),
    GGMLType.Q6_K: BlockLayout(QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2),
}

FLOAT_TYPES = frozenset({GGMLType.F32, GGMLType.F16, GGMLType.BF16})
# Storage names (TensorInfo.storage) of block-quantized GGUF tensors: "Q4_K", "Q8_0", ...
QUANTIZED_NAMES = frozenset(t.name for t in GGMLType if t not in FLOAT_TYPES)
SUPPORTED_NAMES = ", ".join(t.name for t in GGMLType)


class UnsupportedQuantTypeError(ValueError):
    """A GGUF tensor type this pack cannot dequantize."""


def ggml_type(value: int | str | GGMLType) -> GGMLType:
    """The supported type for an id, a name ("Q4_K") or a ``gguf.GGMLQuantizationType``.

    Raises :class:`UnsupportedQuantTypeError` naming the type for anything else.
    """
    try:
        return GGMLType[value] if isinstance(value, str) else GGMLType(int(value))
    except (KeyError, ValueError):
        pass
    raise UnsupportedQuantTypeError(
        f"GGUF tensor type {_type_name(value)} is not supported by this pack; supported types: {SUPPORTED_NAMES}. "
        "Use a file quantized to one of those."
    )


def _type_name(value: int | str) -> str:
    if isinstance(value, str):
        return value
    name = getattr(value, "name", None)
    if name is None:
        try:
            import gguf

            name = gguf.GGMLQuantizationType(int(value)).name
        except (ImportError, ValueError):
            name = f"with id {int(value)}"
    return name


def row_bytes(qtype: GGMLType, row_length: int) -> int:
    """Bytes of one stored row of ``row_length`` weights; the row must hold whole blocks."""
    layout = BLOCK_LAYOUTS[qtype]
    if row_length % layout.block_size:
        raise ValueError(
            f"a {qtype.name} row holds blocks of {layout.block_size} weights; a row of {row_length} does not divide."
        )
    return row_length // layout.block_size * layout.type_size
