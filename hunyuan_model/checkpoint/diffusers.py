"""diffusers-format transformers, and readers whose keys a converter renames on the fly.

A diffusers transformer is a folder with ``config.json`` and ``diffusion_pytorch_model.safetensors``
or shards listed in ``diffusion_pytorch_model.safetensors.index.json`` (a whole pipeline folder
keeps it under ``transformer/``). :class:`DiffusersReader` yields diffusers keys; wrap it (or a
single-file safetensors reader holding diffusers keys) in :class:`ConvertedReader` with the DiT's
``diffusers_to_tencent`` converter to get Tencent keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ..quant import StoredWeight
from .errors import CheckpointError, CorruptCheckpointError
from .reader import CheckpointReader, TensorInfo
from .safetensors_file import SafetensorsReader

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = WEIGHTS_NAME + ".index.json"

Converter = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def transformer_folder(path: str | Path) -> Path | None:
    """The folder holding a diffusers transformer's ``config.json``: ``path`` or its ``transformer/``."""
    path = Path(path)
    for folder in (path, path / "transformer"):
        if (folder / "config.json").is_file():
            return folder
    return None


class DiffusersReader(CheckpointReader):
    """A diffusers transformer folder (see module doc); ``config`` is its parsed ``config.json``."""

    container = "diffusers"

    def __init__(self, path: str | Path) -> None:
        folder = transformer_folder(path)
        if folder is None:
            raise CheckpointError(f"'{path}' is not a diffusers model folder: it has no config.json.")
        self.path, self.prefix, self.metadata = folder, "", {}
        self.config = json.loads((folder / "config.json").read_text())
        self.notes = [f"class {self.config.get('_class_name', 'unknown')}"]
        self._shards = self._open_shards(folder)
        self._owner = {key: reader for reader in self._shards for key in reader.infos()}
        self._infos = {key: info for reader in self._shards for key, info in reader.infos().items()}

    def _open_shards(self, folder: Path) -> list[SafetensorsReader]:
        index_path = folder / INDEX_NAME
        if index_path.is_file():
            weight_map = json.loads(index_path.read_text()).get("weight_map", {})
            shards = []
            for name in sorted(set(weight_map.values())):
                if not (folder / name).is_file():
                    raise CorruptCheckpointError(
                        f"'{index_path}' lists shard '{name}', which is missing from the folder."
                    )
                shards.append(SafetensorsReader(folder / name, prefixes=()))
            held = {key for shard in shards for key in shard.infos()}
            absent = sorted(set(weight_map) - held)
            if absent:
                raise CorruptCheckpointError(f"'{index_path}' lists tensors no shard holds, e.g. {absent[:3]}.")
            self.notes.append(f"{len(shards)} shards")
            return shards
        if (folder / WEIGHTS_NAME).is_file():
            return [SafetensorsReader(folder / WEIGHTS_NAME, prefixes=())]
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        hint = (
            f" It has {pickles[0]}: pickled weights are not loaded (they can run code); get the safetensors version."
            if pickles
            else ""
        )
        raise CheckpointError(f"'{folder}' has a config.json but no {WEIGHTS_NAME} (or {INDEX_NAME}).{hint}")

    def infos(self) -> Mapping[str, TensorInfo]:
        return self._infos

    def load(self, key: str) -> StoredWeight:
        if key not in self._owner:
            raise self.missing_key(key)
        return self._owner[key].load(key)

    def release(self, key: str) -> None:
        if key in self._owner:
            self._owner[key].release(key)


def key_group(key: str) -> str:
    """The unit a converter sees at once: the path up to the first block index, else its first part.

    ``transformer_blocks.3.attn.to_q.weight`` -> ``transformer_blocks.3``;
    ``context_embedder.token_refiner.refiner_blocks.0.norm1.weight`` ->
    ``context_embedder.token_refiner.refiner_blocks.0``; ``norm_out.linear.weight`` -> ``norm_out``.
    """
    match = re.match(r"(.*?\.\d+)\.", key)
    return match.group(1) if match else key.split(".", 1)[0]


class ConvertedReader(CheckpointReader):
    """``reader`` seen through ``convert`` (a state-dict -> state-dict function), one key group at a time.

    Contract for ``convert``: pure torch (it also runs on ``meta`` tensors, which is how shapes are
    known without reading data), and local: the outputs of a key group (see :func:`key_group`)
    depend only on that group's inputs. Inputs come in stored dtype when plain (bf16/fp16/fp32),
    else dequantized to float32. Output tensors are new (renames may stay views of the file).
    Loading keys in :meth:`infos` order converts each group once.
    """

    def __init__(self, reader: CheckpointReader, convert: Converter, group: Callable[[str], str] = key_group) -> None:
        self._reader, self._convert = reader, convert
        self.path, self.container, self.prefix, self.metadata = (
            reader.path,
            reader.container,
            reader.prefix,
            reader.metadata,
        )
        self.notes = [*reader.notes, "keys converted"]
        self._sources: dict[str, list[str]] = {}
        for key in reader.infos():
            self._sources.setdefault(group(key), []).append(key)
        self._infos: dict[str, TensorInfo] = {}
        self._group_of: dict[str, str] = {}
        for name, keys in self._sources.items():
            for key, tensor in self._convert_group(keys, meta=True).items():
                if key in self._group_of:
                    raise CheckpointError(
                        f"the key converter produced '{key}' from two key groups ({name}, {self._group_of[key]})."
                    )
                self._group_of[key] = name
                self._infos[key] = TensorInfo(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
        self._cached: tuple[str, dict[str, torch.Tensor]] | None = None

    def _convert_group(self, keys: list[str], meta: bool) -> dict[str, torch.Tensor]:
        infos = self._reader.infos()
        if meta:
            inputs = {
                key: torch.empty(infos[key].shape, dtype=_meta_dtype(infos[key].storage), device="meta") for key in keys
            }
        else:
            inputs = {key: _plain(self._reader.load(key)) for key in keys}
        return self._convert(inputs)

    def infos(self) -> Mapping[str, TensorInfo]:
        return self._infos

    def load(self, key: str) -> StoredWeight:
        name = self._group_of.get(key)
        if name is None:
            raise self.missing_key(key)
        if self._cached is None or self._cached[0] != name or key not in self._cached[1]:
            self._cached = (name, self._convert_group(self._sources[name], meta=False))
        return StoredWeight.plain(self._cached[1][key])

    def release(self, key: str) -> None:
        """Drop the converted tensor ``key``; after the group's last one, release its sources in ``reader``.

        Sources go last: outputs that are views of them (renames) read them until then.
        """
        if self._cached is None or self._group_of.get(key) != self._cached[0]:
            return
        name, outputs = self._cached
        outputs.pop(key, None)
        if not outputs:
            self._cached = None
            for source in self._sources[name]:
                self._reader.release(source)


def _meta_dtype(storage: str) -> torch.dtype:
    dtype = getattr(torch, storage, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point and dtype.itemsize > 1 else torch.float32


def _plain(stored: StoredWeight) -> torch.Tensor:
    return stored.data if stored.is_plain_float else stored.dense(torch.float32)
