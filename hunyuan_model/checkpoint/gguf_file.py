"""GGUF files (city96's HunyuanVideo quantizations: architecture ``hyvid``, Tencent keys; llama.cpp text encoders).

Read with the ``gguf`` package (imported here, lazily), memory-mapped copy-on-write; quantized
tensors stay raw block bytes until dequantized. GGUF stores dimensions innermost first, so the
logical shape is the stored one reversed, unless ``comfy.gguf.orig_shape.<name>`` overrides it
(city96's converter reshapes some tensors). HunyuanVideo's 5-D ``img_in.proj.weight`` is a real
5-D F32 tensor in those files (llama.cpp's own reader could not hold it; gguf-py can).
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import torch

from ..host_memory import drop_file_pages
from ..identify import GGUF_ARCHITECTURES
from ..quant import GGMLType, StoredWeight, UnsupportedQuantTypeError
from ..quant.ggml_types import SUPPORTED_NAMES
from .errors import CorruptCheckpointError, WrongModelError
from .reader import DIT_PREFIXES, PRIVATE_MAPPING, CheckpointReader, TensorInfo, find_prefix

HUNYUAN_VIDEO_ARCHITECTURE = "hyvid"
GGUF_MAGIC = b"GGUF"
_ORIG_SHAPE = "comfy.gguf.orig_shape."
_FLOAT_VIEWS = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16, GGMLType.BF16: torch.bfloat16}


class GGUFReader(CheckpointReader):
    """A GGUF file; ``architecture`` (if not None) must match ``general.architecture`` when it is set."""

    container = "GGUF"

    def __init__(
        self,
        path: str | Path,
        architecture: str | None = HUNYUAN_VIDEO_ARCHITECTURE,
        prefixes: tuple[str, ...] = DIT_PREFIXES,
    ) -> None:
        self.path = Path(path)
        reader = _open(self.path)
        self.metadata = {name: field.contents() for name, field in reader.fields.items() if _is_scalar(field)}
        self.architecture = self.metadata.get("general.architecture")
        if architecture is not None and self.architecture not in (None, architecture):
            raise WrongModelError(_other_architecture(self.path, self.architecture, architecture))
        _refuse_unsupported(self.path, reader.tensors)
        found = find_prefix([tensor.name for tensor in reader.tensors], prefixes)
        self.prefix = found.prefix
        self.notes = [f"architecture '{self.architecture}'" if self.architecture else "no architecture field"]
        if found.prefix:
            self.notes.append(f"key prefix '{found.prefix}'")
        keep = len(found.prefix)
        self._tensors = {t.name[keep:]: t for t in reader.tensors if t.name.startswith(found.prefix)}
        self._shapes = {key: _logical_shape(reader, t) for key, t in self._tensors.items()}
        self._infos = {
            key: TensorInfo(self._shapes[key], _storage_name(GGMLType(int(t.tensor_type))))
            for key, t in self._tensors.items()
        }

    def load(self, key: str) -> StoredWeight:
        tensor = self._tensors.get(key)
        if tensor is None:
            raise self.missing_key(key)
        qtype, shape = GGMLType(int(tensor.tensor_type)), self._shapes[key]
        data = _as_torch(tensor.data)
        if qtype in _FLOAT_VIEWS:
            return StoredWeight.plain(data.reshape(-1).view(torch.uint8).view(_FLOAT_VIEWS[qtype]).reshape(shape))
        return StoredWeight(data, shape, qtype=qtype)

    def release(self, key: str) -> None:
        if key in self._tensors:
            drop_file_pages(_as_torch(self._tensors[key].data))


def _as_torch(array) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only on Windows (see PRIVATE_MAPPING); never written
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _storage_name(qtype: GGMLType) -> str:
    return str(_FLOAT_VIEWS[qtype]).removeprefix("torch.") if qtype in _FLOAT_VIEWS else qtype.name


def _logical_shape(reader, tensor) -> tuple[int, ...]:
    override = reader.fields.get(_ORIG_SHAPE + tensor.name)
    if override is not None:
        return tuple(int(v) for v in override.contents())
    return tuple(int(v) for v in reversed(tensor.shape.tolist()))


def _is_scalar(field) -> bool:
    """A single string or number (``general.architecture``, ``llama.attention.head_count``), not an array."""
    import gguf

    return len(field.types) == 1 and field.types[0] != gguf.GGUFValueType.ARRAY


def _other_architecture(path: Path, found: str, wanted: str) -> str:
    kind, wanted_kind = GGUF_ARCHITECTURES.get(found), GGUF_ARCHITECTURES[wanted]
    message = (
        f"'{path.name}' is a GGUF file for architecture '{found}', {kind.what if kind else 'another model family'}; "
        f"this loader needs {wanted_kind.what} as GGUF (architecture '{wanted}')."
    )
    if kind is not None and kind.loader is not None:  # a model of this pack, picked in another loader
        message += f" Load it with {kind.loader} from models/{kind.loader.folder}."
    return message


def _refuse_unsupported(path: Path, tensors) -> None:
    supported = {int(t) for t in GGMLType}
    bad = [t for t in tensors if int(t.tensor_type) not in supported]
    if bad:
        types = sorted({t.tensor_type.name for t in bad})
        raise UnsupportedQuantTypeError(
            f"'{path.name}' uses GGUF tensor type {', '.join(types)} (e.g. '{bad[0].name}'), which this pack "
            f"does not support; supported types: {SUPPORTED_NAMES}. Use a file quantized to one of those."
        )


def _open(path: Path):
    with open(path, "rb") as file:
        if file.read(4) != GGUF_MAGIC:
            raise CorruptCheckpointError(f"'{path}' is not a GGUF file (it does not start with 'GGUF').")
    try:
        return _checked_reader_class()(path, "c" if PRIVATE_MAPPING else "r")
    except _TensorPastEnd as error:
        raise CorruptCheckpointError(f"'{path}' is truncated: {error}.") from None
    except UnsupportedQuantTypeError as error:
        raise UnsupportedQuantTypeError(f"'{path.name}': {error}") from None
    except Exception as error:  # gguf-py reports cut-short headers as numpy shape errors
        raise CorruptCheckpointError(
            f"'{path}' is truncated or damaged: its GGUF header or tensor table cannot be read "
            f"({type(error).__name__}: {error})."
        ) from None


class _TensorPastEnd(Exception):
    pass


@functools.cache
def _checked_reader_class():
    import gguf

    class CheckedReader(gguf.GGUFReader):
        """gguf-py's reader, first checking every tensor lies inside the file, to name the one that does not."""

        def _build_tensors(self, start_offs, fields):
            size = len(self.data)
            for field in fields:
                name = bytes(field.parts[1]).decode("utf-8", "replace")
                dims, raw_type, offset = field.parts[3], int(field.parts[4][0]), int(field.parts[5][0])
                try:
                    qtype = gguf.GGMLQuantizationType(raw_type)
                except ValueError:
                    raise UnsupportedQuantTypeError(
                        f"tensor '{name}' has GGUF type id {raw_type}, unknown to the gguf package and to this "
                        f"pack (supported: {SUPPORTED_NAMES})."
                    ) from None
                block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
                end = start_offs + offset + math.prod(int(d) for d in dims) // block_size * type_size
                if end > size:
                    raise _TensorPastEnd(f"tensor '{name}' ends at byte {end} but the file has {size} bytes")
            super()._build_tensors(start_offs, fields)

    return CheckedReader
