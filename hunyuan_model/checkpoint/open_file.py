"""Opening a model file by what its bytes are, never by its name."""

from __future__ import annotations

import struct
from pathlib import Path

from .diffusers import DiffusersReader, transformer_folder
from .errors import CheckpointError, CorruptCheckpointError
from .gguf_file import GGUF_MAGIC, GGUFReader
from .reader import CheckpointReader
from .safetensors_file import SafetensorsReader
from .torch_file import ZIP_MAGIC, TorchReader

_PICKLE_PROTOCOL = b"\x80"  # legacy (non-zip) torch.save files are a pickle stream


def sniff_format(path: str | Path) -> str:
    """``"safetensors"``, ``"torch"``, ``"gguf"`` or ``"diffusers"`` (a folder), from the contents.

    Raises :class:`CorruptCheckpointError` for a file that is none of them (empty, truncated, other).
    """
    path = Path(path)
    if path.is_dir():
        if transformer_folder(path) is None:
            raise CheckpointError(f"'{path}' is a folder without a config.json, not a diffusers model.")
        return "diffusers"
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist.")
    with open(path, "rb") as file:
        head = file.read(9)
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if head[:4] == ZIP_MAGIC or head[:1] == _PICKLE_PROTOCOL:
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] > 1:
        return "safetensors"
    raise CorruptCheckpointError(
        f"'{path}' is not a model file this pack reads (safetensors, PyTorch .pt/.pth, GGUF): "
        f"it is {path.stat().st_size} bytes starting with {head!r}."
    )


def open_checkpoint(path: str | Path, *, load_key: str | None = None) -> CheckpointReader:
    """A reader for the file or diffusers folder at ``path``, chosen by :func:`sniff_format`.

    ``load_key`` picks a wrapper entry of a ``.pt`` file (``"ema"``); keys come without the DiT
    prefixes (:data:`.reader.DIT_PREFIXES`). Scale maps and key conversion are layered on top
    (:func:`.fp8_map.with_scale_map`, :class:`.diffusers.ConvertedReader`).
    """
    kind = sniff_format(path)
    if kind == "safetensors":
        return SafetensorsReader(path)
    if kind == "torch":
        return TorchReader(path, load_key=load_key)
    if kind == "gguf":
        return GGUFReader(path)
    return DiffusersReader(path)
