"""The interface every checkpoint reader implements, and key-prefix detection.

A reader opens a file without reading its tensors: :meth:`CheckpointReader.infos` gives every key
with its logical shape and storage type (so a loader can infer the model config and build it on
``meta`` first), :meth:`CheckpointReader.load` gives one tensor as a
:class:`~..quant.StoredWeight`, usually a view of the memory-mapped file, and
:meth:`CheckpointReader.release` lets the kernel drop that tensor's pages once the loader is done with it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..quant import StoredWeight

# Prefixes ComfyUI-style and other repackaged DiT files put before Tencent's keys, longest first.
DIT_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
# Whole-model bundles (DiT + VAE + text encoders in one file) keep the DiT under these.
_BUNDLE_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


@dataclass(frozen=True)
class TensorInfo:
    """What a reader knows about a tensor before reading it."""

    shape: tuple[int, ...]
    storage: str  # "bfloat16", "float8_e4m3fn", "float8_e4m3fn scaled", "Q4_K", ...


@dataclass
class Prefix:
    """The key prefix found in a file: ``prefix`` + key is the key as stored."""

    prefix: str = ""
    ignored: list[str] = field(default_factory=list)  # keys outside the prefix (a bundle's other parts)


def find_prefix(keys: Iterable[str], prefixes: tuple[str, ...] = DIT_PREFIXES) -> Prefix:
    """The first of ``prefixes`` that every key starts with; for bundles, the DiT part's prefix.

    Without a match the keys are used as they are (``Prefix("")``).
    """
    keys = list(keys)
    for prefix in prefixes:
        if keys and all(key.startswith(prefix) for key in keys):
            return Prefix(prefix)
    for prefix in _BUNDLE_PREFIXES:
        if prefix in prefixes and any(key.startswith(prefix) for key in keys):
            return Prefix(prefix, [key for key in keys if not key.startswith(prefix)])
    return Prefix()


class CheckpointReader(ABC):
    """A model file opened for reading, keys without prefix (see module doc)."""

    path: Path
    container: str  # "safetensors", "torch", "gguf", "diffusers"
    prefix: str = ""
    notes: list[str]  # what was found on the way: wrapper key, prefix, markers; for messages and logs
    metadata: dict[str, str]

    _infos: Mapping[str, TensorInfo]

    def infos(self) -> Mapping[str, TensorInfo]:
        """Every tensor key (prefix stripped) with its shape and storage, in file order."""
        return self._infos

    @abstractmethod
    def load(self, key: str) -> StoredWeight:
        """The tensor ``key`` as stored, usually a zero-copy view of the file."""

    def release(self, key: str) -> None:  # noqa: B027 - optional; most readers have nothing to drop
        """The loader is done with the tensor from :meth:`load`; its file pages may go.

        A view the model keeps stays valid: its pages come back from the file when touched.
        """

    def keys(self) -> list[str]:
        return list(self.infos())

    def __contains__(self, key: object) -> bool:
        return key in self.infos()

    def __len__(self) -> int:
        return len(self.infos())

    def describe(self) -> str:
        """One line for messages: container, file name and what was found."""
        details = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.container} file '{self.path.name}'{details}"

    def missing_key(self, key: str) -> KeyError:
        return KeyError(f"{self.describe()} has no tensor '{key}'")


class StateDictReader(CheckpointReader):
    """Tensors already in memory (a state dict), read through the same interface as a file."""

    container = "state dict"

    def __init__(self, state_dict: Mapping[str, torch.Tensor], name: str = "in memory") -> None:
        self.path, self.prefix, self.notes, self.metadata = Path(name), "", [], {}
        self._set_tensors(state_dict)

    def _set_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._tensors = dict(tensors)
        self._infos = {
            key: TensorInfo(tuple(value.shape), str(value.dtype).removeprefix("torch."))
            for key, value in self._tensors.items()
        }

    def load(self, key: str) -> StoredWeight:
        if key not in self._tensors:
            raise self.missing_key(key)
        return StoredWeight.plain(self._tensors[key])

    def describe(self) -> str:
        return f"the state dict '{self.path.name}'"


class WrappedReader(CheckpointReader):
    """Another reader's file seen differently (keys renamed or converted, scales attached): the file,
    container, prefix and metadata stay ``reader``'s; ``note`` (if any) says what changed."""

    def __init__(self, reader: CheckpointReader, note: str | None = None) -> None:
        self._reader = reader
        self.path, self.container, self.prefix, self.metadata = (
            reader.path,
            reader.container,
            reader.prefix,
            reader.metadata,
        )
        self.notes = [*reader.notes, note] if note else list(reader.notes)


class KeyMappedReader(WrappedReader):
    """The tensors ``keys`` names (model key -> key in ``reader``) and no others, under the model's names.

    How a loader reads one part of a file in its own names: the LLM inside a LLaVA folder, the CLIP
    text tower under ``text_model.``.
    """

    def __init__(self, reader: CheckpointReader, keys: Mapping[str, str], note: str | None = None) -> None:
        super().__init__(reader, note)
        self._keys = dict(keys)
        found = reader.infos()
        self._infos = {key: found[stored] for key, stored in self._keys.items() if stored in found}

    def load(self, key: str) -> StoredWeight:
        if key not in self._infos:
            raise self.missing_key(key)
        return self._reader.load(self._keys[key])

    def release(self, key: str) -> None:
        if key in self._infos:
            self._reader.release(self._keys[key])


def plain_tensor(stored: StoredWeight) -> torch.Tensor:
    """A stored weight as an ordinary tensor: as stored when bf16/fp16/fp32, else dequantized to float32."""
    return stored.data if stored.is_plain_float else stored.dense(torch.float32)


# Private copy-on-write mappings hand torch writable buffers without copying, except on Windows,
# where a copy-on-write view is charged against the commit limit in full (a 25 GB model would need
# 25 GB of page file): there the mapping is read-only (tensors must not be written in place).
PRIVATE_MAPPING = os.name != "nt"
