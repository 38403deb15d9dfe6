"""A weight as a checkpoint stores it: plain, FP8 with a per-tensor scale, or raw GGUF blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .dequant import dequantize
from .fp8 import fp8_dequantize
from .ggml_types import BLOCK_LAYOUTS, GGMLType


@dataclass(frozen=True)
class StoredWeight:
    """One stored tensor and how to read it.

    ``data`` is the tensor as stored (often a view of a memory-mapped file): a float tensor of
    ``shape`` (bf16, fp16, fp32, float8_*), or, when ``qtype`` is set, the raw GGUF block bytes
    (uint8, any shape holding exactly the blocks). ``scale`` is a float32 scalar that the stored
    values are multiplied by (Tencent's FP8 scale map, ComfyUI's ``scale_weight``).
    """

    data: torch.Tensor
    shape: tuple[int, ...]
    qtype: GGMLType | None = None
    scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.qtype is None and tuple(self.data.shape) != tuple(self.shape):
            raise ValueError(f"stored tensor of shape {list(self.data.shape)} declared as {list(self.shape)}")
        if self.qtype is not None:
            layout = BLOCK_LAYOUTS[self.qtype]
            expected = math.prod(self.shape) // layout.block_size * layout.type_size
            if self.data.dtype != torch.uint8 or self.data.numel() != expected:
                raise ValueError(
                    f"{self.qtype.name} tensor of shape {list(self.shape)} needs {expected} bytes, "
                    f"got a {self.data.dtype} tensor of {self.data.numel()} elements"
                )
        if self.scale is not None:
            if self.scale.numel() != 1:
                raise ValueError(f"a per-tensor scale has one element, got shape {list(self.scale.shape)}")
            object.__setattr__(self, "scale", self.scale.reshape(()).float())

    @classmethod
    def plain(cls, tensor: torch.Tensor) -> StoredWeight:
        return cls(tensor, tuple(tensor.shape))

    @property
    def storage_name(self) -> str:
        """What the file stores, for messages: ``"Q4_K"``, ``"float8_e4m3fn scaled"``, ``"bfloat16"``."""
        name = self.qtype.name if self.qtype is not None else str(self.data.dtype).removeprefix("torch.")
        return name if self.scale is None else f"{name} scaled"

    @property
    def is_plain_float(self) -> bool:
        """Held as an unscaled bf16/fp16/fp32 tensor (no FP8, no GGUF blocks)."""
        return (
            self.qtype is None
            and self.scale is None
            and self.data.dtype in (torch.bfloat16, torch.float16, torch.float32)
        )

    def dense(self, dtype: torch.dtype, device: torch.device | str | None = None) -> torch.Tensor:
        """The logical tensor in ``dtype`` on ``device`` (default: where it is).

        A plain tensor already in ``dtype`` on ``device`` is returned as is (no copy: a view of
        the file where the reader memory-mapped it).
        """
        data = self.data if device is None else self.data.to(device)
        if self.qtype is not None:
            dense = dequantize(data, self.qtype, self.shape, torch.float32)
            return dense.to(dtype) if self.scale is None else fp8_dequantize(dense, self.scale.to(data.device), dtype)
        if self.scale is not None:
            return fp8_dequantize(data, self.scale.to(data.device), dtype)
        return data.to(dtype)
