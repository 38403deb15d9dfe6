"""safetensors files, memory-mapped, with ComfyUI's scaled-FP8 convention folded in.

The header is parsed and checked here (not by the ``safetensors`` package) so that a truncated
file is reported with the tensor that runs past its end, and so that tensors are zero-copy views
of one private file mapping (pages load on first touch; :meth:`release` drops them again).

ComfyUI "scaled FP8" files carry a marker tensor ``scaled_fp8`` and, per FP8 layer,
``<layer>.scale_weight`` (float32 scalar; ``W = W8 * scale_weight``) and sometimes
``<layer>.scale_input`` (a static activation scale this pack does not need: it scales activations
per call). Newer ComfyUI quantized files (``comfy/utils.py:1388`` converts the old names to them,
ComfyUI 0.19) say ``<layer>.weight_scale`` and ``<layer>.input_scale`` plus a ``<layer>.comfy_quant``
JSON tensor. :data:`WEIGHT_SCALE_SUFFIXES` and :data:`AUXILIARY_SUFFIXES` are the one table of these
names for every model. The marker and scales are not keys of the reader; each scale rides on its weight.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
import warnings
from pathlib import Path

import torch

from ..host_memory import drop_file_pages
from ..quant import StoredWeight
from .errors import CorruptCheckpointError
from .reader import DIT_PREFIXES, PRIVATE_MAPPING, CheckpointReader, TensorInfo, find_prefix

DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
SCALED_FP8_MARKER = "scaled_fp8"
WEIGHT_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
AUXILIARY_SUFFIXES = (*WEIGHT_SCALE_SUFFIXES, ".scale_input", ".input_scale", ".comfy_quant")


def read_header(path: Path) -> tuple[dict[str, dict], dict[str, str], int]:
    """``(tensors, metadata, data_start)`` of a safetensors file, every offset checked against its size.

    ``tensors`` maps each stored key to ``{"dtype", "shape", "data_offsets"}`` with absolute offsets.
    """
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) < 8:
            raise CorruptCheckpointError(f"'{path}' is {size} bytes, too short for a safetensors header.")
        (header_size,) = struct.unpack("<Q", head)
        if header_size > size - 8:
            raise CorruptCheckpointError(
                f"'{path}' is truncated or not a safetensors file: its header claims {header_size} bytes "
                f"but the file has only {size - 8} after the length field."
            )
        try:
            header = json.loads(file.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CorruptCheckpointError(
                f"'{path}' has a damaged safetensors header (not valid JSON: {error})."
            ) from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError(f"'{path}' has a damaged safetensors header (not a JSON object).")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_size
    for key, entry in header.items():
        _check_entry(path, key, entry, data_start, size)
    return header, metadata, data_start


def _check_entry(path: Path, key: str, entry: dict, data_start: int, size: int) -> None:
    try:
        dtype, shape, (begin, end) = DTYPES[entry["dtype"]], entry["shape"], entry["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise CorruptCheckpointError(
            f"'{path}': header entry for tensor '{key}' is damaged or uses an unknown dtype ({entry!r:.200})."
        ) from None
    expected = math.prod(shape) * dtype.itemsize
    if end - begin != expected:
        raise CorruptCheckpointError(
            f"'{path}': tensor '{key}' ({entry['dtype']} {shape}) needs {expected} bytes but the header gives it "
            f"{end - begin}; the file is damaged."
        )
    if data_start + end > size:
        raise CorruptCheckpointError(
            f"'{path}' is truncated: tensor '{key}' ends at byte {data_start + end} but the file has {size} bytes."
        )
    entry["data_offsets"] = (data_start + begin, data_start + end)


class SafetensorsReader(CheckpointReader):
    """A safetensors file; ``prefixes`` are stripped from keys as :func:`.reader.find_prefix` decides."""

    container = "safetensors"

    def __init__(self, path: str | Path, prefixes: tuple[str, ...] = DIT_PREFIXES) -> None:
        self.path = Path(path)
        self._entries, self.metadata, _ = read_header(self.path)
        self._map: mmap.mmap | None = None
        self.notes = []
        # File order (by data offset): loading in this order reads the file front to back.
        by_offset = sorted(self._entries, key=lambda key: self._entries[key]["data_offsets"])
        stored_keys = [key for key in by_offset if not self._is_auxiliary(key)]
        found = find_prefix(stored_keys, prefixes)
        self.prefix = found.prefix
        if found.prefix:
            self.notes.append(f"key prefix '{found.prefix}'")
        if found.ignored:
            self.notes.append(f"{len(found.ignored)} tensors outside the prefix ignored, e.g. '{found.ignored[0]}'")
        self.scaled_fp8 = self._marker() is not None
        if self.scaled_fp8:
            self.notes.append(f"ComfyUI scaled FP8 ({self._marker()['dtype']})")
        keep = len(found.prefix)
        self._keys = {key[keep:]: key for key in stored_keys if key.startswith(found.prefix)}
        self._infos = {key: self._info(stored) for key, stored in self._keys.items()}

    def _is_auxiliary(self, key: str) -> bool:
        return key.endswith(AUXILIARY_SUFFIXES) or key.rpartition(".")[2] == SCALED_FP8_MARKER

    def _marker(self) -> dict | None:
        return self._entries.get(self.prefix + SCALED_FP8_MARKER, self._entries.get(SCALED_FP8_MARKER))

    def _scale_key(self, stored_key: str) -> str | None:
        base, _, leaf = stored_key.rpartition(".")
        if leaf != "weight":
            return None
        return next((base + suffix for suffix in WEIGHT_SCALE_SUFFIXES if base + suffix in self._entries), None)

    def _info(self, stored_key: str) -> TensorInfo:
        entry = self._entries[stored_key]
        storage = str(DTYPES[entry["dtype"]]).removeprefix("torch.")
        if self._scale_key(stored_key):
            storage += " scaled"
        return TensorInfo(tuple(entry["shape"]), storage)

    def load(self, key: str) -> StoredWeight:
        stored_key = self._keys.get(key)
        if stored_key is None:
            raise self.missing_key(key)
        scale_key = self._scale_key(stored_key)
        scale = None if scale_key is None else self._tensor(scale_key).float()
        tensor = self._tensor(stored_key)
        return StoredWeight(tensor, tuple(tensor.shape), scale=scale)

    def release(self, key: str) -> None:
        if key in self._keys and self._map is not None:
            drop_file_pages(self._tensor(self._keys[key]))

    def _tensor(self, stored_key: str) -> torch.Tensor:
        entry = self._entries[stored_key]
        dtype, shape, (begin, end) = DTYPES[entry["dtype"]], entry["shape"], entry["data_offsets"]
        if end == begin:
            return torch.empty(shape, dtype=dtype)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given buffer is not writable")
            raw = torch.frombuffer(self._mapping(), dtype=torch.uint8, count=end - begin, offset=begin)
        return raw.view(dtype).reshape(shape)

    def _mapping(self) -> mmap.mmap:
        if self._map is None:
            access = mmap.ACCESS_COPY if PRIVATE_MAPPING else mmap.ACCESS_READ
            with open(self.path, "rb") as file:
                self._map = mmap.mmap(file.fileno(), 0, access=access)
        return self._map
