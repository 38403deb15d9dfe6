"""Opening a model file by what its bytes are, never by its name."""

from __future__ import annotations

import struct
from pathlib import Path

from .errors import CheckpointError, CorruptCheckpointError
from .folder import FolderReader, model_folder
from .gguf_file import GGUF_MAGIC, HUNYUAN_VIDEO_ARCHITECTURE, GGUFReader
from .reader import DIT_PREFIXES, CheckpointReader
from .safetensors_file import SafetensorsReader
from .torch_file import ZIP_MAGIC, TorchReader

_PICKLE_PROTOCOL = b"\x80"  # legacy (non-zip) torch.save files are a pickle stream


def sniff_format(path: str | Path) -> str:
    """``"safetensors"``, ``"torch"``, ``"gguf"`` or ``"folder"`` (diffusers/transformers), from the contents.

    Raises :class:`CorruptCheckpointError` for a file that is none of them (empty, truncated, other).
    """
    path = Path(path)
    if path.is_dir():
        if model_folder(path) is None:
            raise CheckpointError(f"'{path}' is a folder without a config.json or weight files, not a model folder.")
        return "folder"
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


def open_checkpoint(
    path: str | Path,
    *,
    load_key: str | None = None,
    prefixes: tuple[str, ...] = DIT_PREFIXES,
    architecture: str | None = HUNYUAN_VIDEO_ARCHITECTURE,
) -> CheckpointReader:
    """A reader for the file or model folder at ``path``, chosen by :func:`sniff_format`: how every
    model of the pack (DiT, LLM, CLIP, VAE) opens its weights.

    ``load_key`` picks a wrapper entry of a ``.pt`` file (``"ema"``); ``prefixes`` are stripped from
    the keys of a single file (:func:`.reader.find_prefix`; the DiT's by default, ``()`` for none);
    ``architecture`` is what a GGUF file's ``general.architecture`` must say when set (None: any).
    Scale maps, key conversion and key subsets are layered on top (:func:`.fp8_map.with_scale_map`,
    :class:`.converted.ConvertedReader`, :class:`.reader.KeyMappedReader`).
    """
    kind = sniff_format(path)
    if kind == "safetensors":
        return SafetensorsReader(path, prefixes=prefixes)
    if kind == "torch":
        return TorchReader(path, load_key=load_key, prefixes=prefixes)
    if kind == "gguf":
        return GGUFReader(path, architecture=architecture, prefixes=prefixes)
    return FolderReader(path)
