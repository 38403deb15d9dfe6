"""Model folders as diffusers and transformers save them: ``config.json`` beside one or more weight files.

A diffusers transformer keeps ``diffusion_pytorch_model.safetensors`` (a whole pipeline folder
under ``transformer/``); a transformers model ``model.safetensors`` or ``pytorch_model.bin``. Either
may be sharded, the shards listed in ``<weights>.index.json``. Every weight file is opened with
:func:`~.open_file.open_checkpoint`, so a ``.bin`` is read with ``weights_only`` and refused when
it needs code (:class:`~.errors.UnsafeCheckpointError`, naming the shard), and a damaged shard is
named. Keys keep the names the folder's model class gives them (no prefix is stripped): the
loader of each model finds its own part (the DiT converts diffusers keys, the text encoders look
for their towers).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..quant import StoredWeight
from .errors import CheckpointError, CorruptCheckpointError
from .reader import CheckpointReader

# Single weight files, then the index of a sharded save, in the order a folder is searched.
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors", "pytorch_model.bin")
INDEX_SUFFIX = ".index.json"
_WEIGHT_PATTERNS = ("*.safetensors", "*.sft", "*.bin")


def model_folder(path: str | Path) -> Path | None:
    """The folder holding the model at ``path``: ``path`` itself when it has ``config.json`` or weight
    files, else its ``transformer/`` subfolder (a diffusers pipeline); None when neither holds a model."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "config.json").is_file() or _weight_files(path):
        return path
    return path / "transformer" if (path / "transformer" / "config.json").is_file() else None


def _weight_files(folder: Path) -> list[Path]:
    for name in WEIGHT_NAMES:
        index = folder / (name + INDEX_SUFFIX)
        if index.is_file():
            return _shards(index)
        if (folder / name).is_file():
            return [folder / name]
    for pattern in _WEIGHT_PATTERNS:  # other names (Tencent's text-only folder, hand-made saves)
        files = sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))
        if files:
            return files
    return []


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text()).get("weight_map", {})
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise CorruptCheckpointError(f"'{index}' is damaged: not a JSON shard index ({error}).") from None
    shards = []
    for name in sorted(set(weight_map.values())):
        if not (index.parent / name).is_file():
            raise CorruptCheckpointError(f"'{index}' lists shard '{name}', which is missing from the folder.")
        shards.append(index.parent / name)
    return shards


class FolderReader(CheckpointReader):
    """A diffusers or transformers model folder (see module doc); ``config`` is its parsed ``config.json``."""

    def __init__(self, path: str | Path) -> None:
        from .open_file import open_checkpoint

        folder = model_folder(path)
        if folder is None:
            raise CheckpointError(
                f"'{path}' is not a model folder: it has no config.json and no weight files "
                f"({', '.join(WEIGHT_NAMES)} or shards of them)."
            )
        self.path, self.prefix, self.metadata = folder, "", {}
        self.config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        self.container = (
            "diffusers" if "_diffusers_version" in self.config or "_class_name" in self.config else "transformers"
        )
        self.notes = [f"class {self._class_name()}"]
        files = _weight_files(folder)
        if not files:
            raise CheckpointError(f"'{folder}' has a config.json but no weight files ({', '.join(WEIGHT_NAMES)}).")
        self._shards = [open_checkpoint(file, prefixes=(), architecture=None) for file in files]
        if len(files) > 1:
            self.notes.append(f"{len(files)} shards")
        self._owner = {key: reader for reader in self._shards for key in reader.infos()}
        self._infos = {key: info for reader in self._shards for key, info in reader.infos().items()}
        self._check_index(folder)

    def _class_name(self) -> str:
        return self.config.get("_class_name") or next(iter(self.config.get("architectures", [])), "unknown")

    def _check_index(self, folder: Path) -> None:
        for index in folder.glob("*" + INDEX_SUFFIX):
            listed = json.loads(index.read_text()).get("weight_map", {})
            absent = sorted(set(listed) - set(self._infos))
            if absent:
                raise CorruptCheckpointError(f"'{index}' lists tensors no shard holds, e.g. {absent[:3]}.")

    def load(self, key: str) -> StoredWeight:
        if key not in self._owner:
            raise self.missing_key(key)
        return self._owner[key].load(key)

    def release(self, key: str) -> None:
        if key in self._owner:
            self._owner[key].release(key)
