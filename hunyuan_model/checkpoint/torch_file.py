"""PyTorch ``.pt``/``.pth`` files, loaded only with ``torch.load(weights_only=True)``, memory-mapped.

Tencent's releases are DeepSpeed-style ``{"module": state_dict}`` (``"ema"`` on request); other
tools save a bare state dict or wrap it in ``"state_dict"`` or ``"model"``. A pickle that needs
code to load (any class beyond tensors and plain containers) is refused: a shared model file must
not run code on the user's machine.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from ..host_memory import drop_file_pages
from .errors import CheckpointError, CorruptCheckpointError, UnsafeCheckpointError
from .reader import DIT_PREFIXES, CheckpointReader, StateDictReader, find_prefix

WRAPPER_KEYS = ("module", "state_dict", "model")
ZIP_MAGIC = b"PK\x03\x04"


def load_weights_only(path: Path) -> tuple[object, bool]:
    """``(object, memory_mapped)`` from ``torch.load(weights_only=True)``; mmap for zip-format files.

    Raises :class:`UnsafeCheckpointError` for pickles that need code, and
    :class:`CorruptCheckpointError` naming the damaged part for truncated or broken archives.
    """
    with open(path, "rb") as file:
        zipped = file.read(4) == ZIP_MAGIC
    if zipped:
        _check_zip(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped), zipped
    except pickle.UnpicklingError as error:
        # torch's message advises retrying with weights_only=False: never pass that on.
        needs = re.search(r"GLOBAL ([\w.]+)", str(error))
        if needs is None:  # an opcode the safe unpickler does not know: bytes that are no pickle
            raise CorruptCheckpointError(
                f"'{path}' is truncated or damaged: it starts like a PyTorch pickle but cannot be read as one."
            ) from None
        raise UnsafeCheckpointError(
            f"'{path}' is a pickle that needs code to load (it references {needs.group(1)}); model files that "
            "run code are refused for safety. Use a .safetensors version of this model."
        ) from None
    except RuntimeError as error:
        missing = re.search(r"failed locating file ([^\s:]+)", str(error))
        if missing:
            raise CorruptCheckpointError(f"'{path}' is damaged: its record '{missing.group(1)}' is missing.") from None
        raise CorruptCheckpointError(f"'{path}' could not be read as a PyTorch file: {str(error)[:300]}") from None
    except Exception as error:  # the unpickler fails in many ways on garbage: all mean a damaged file
        raise CorruptCheckpointError(f"'{path}' is truncated or damaged ({type(error).__name__}: {error}).") from None


def _check_zip(path: Path) -> None:
    """A zip-format ``.pt`` keeps its directory at the end: a truncated file has lost it."""
    try:
        zipfile.ZipFile(path).close()
    except zipfile.BadZipFile:
        raise CorruptCheckpointError(
            f"'{path}' is truncated or damaged: the zip directory at the end of this PyTorch file is missing."
        ) from None


def unwrap_state_dict(obj: object, path: Path, load_key: str | None = None) -> tuple[dict, str | None]:
    """``(state_dict, wrapper key or None)``: ``obj[load_key]`` if asked, a bare tensor dict, or the first wrapper."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"'{path}' holds a {type(obj).__name__}, not a state dict of tensors.")
    top = ", ".join(repr(key) for key in list(obj)[:8])
    if load_key is not None:
        if not isinstance(obj.get(load_key), dict):
            raise CheckpointError(f"'{path}' has no '{load_key}' state dict; its top-level keys are {top}.")
        return obj[load_key], load_key
    if any(isinstance(value, torch.Tensor) for value in obj.values()):
        return obj, None
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key], key
    raise CheckpointError(f"'{path}' holds no state dict of tensors; its top-level keys are {top}.")


class TorchReader(StateDictReader):
    """A ``.pt``/``.pth`` file (see module doc); ``load_key`` picks a wrapper entry such as ``"ema"``."""

    container = "PyTorch"
    describe = CheckpointReader.describe  # a file, not an in-memory state dict

    def __init__(self, path: str | Path, load_key: str | None = None, prefixes: tuple[str, ...] = DIT_PREFIXES) -> None:
        self.path = Path(path)
        obj, self.memory_mapped = load_weights_only(self.path)
        state, self.wrapper = unwrap_state_dict(obj, self.path, load_key)
        self.metadata = {}
        self.notes = [f"state dict under '{self.wrapper}'" if self.wrapper else "bare state dict"]
        if not self.memory_mapped:
            self.notes.append("legacy (non-zip) format, read into memory")
        tensors = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
        found = find_prefix(tensors, prefixes)
        self.prefix = found.prefix
        if found.prefix:
            self.notes.append(f"key prefix '{found.prefix}'")
        keep = len(found.prefix)
        self._set_tensors({key[keep:]: value for key, value in tensors.items() if key.startswith(found.prefix)})

    def release(self, key: str) -> None:
        if self.memory_mapped and key in self._tensors:
            drop_file_pages(self._tensors[key])
