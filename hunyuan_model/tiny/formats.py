"""The container formats the tiny model writers save in: safetensors files, model folders, GGUF.

Mirrors of the readers in :mod:`..checkpoint` (one writer per container, shared by the DiT, text
encoder and VAE writers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

# gguf-py quantizes these itself (the K types it can only read: city96 made those with llama.cpp).
GGUF_WRITABLE = ("F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")
_GGUF_SMALL = 1024  # city96's converter keeps 1-D tensors and those of at most this many weights in F32


def parent_made(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_safetensors_file(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """``tensors`` as one safetensors file (``format: pt`` metadata, as torch-made files have)."""
    from safetensors.torch import save_file

    path = parent_made(path)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path), metadata={"format": "pt"})
    return path


def write_model_folder(
    folder: str | os.PathLike, shards: Mapping[str, Mapping[str, torch.Tensor]], config: dict | None = None
) -> Path:
    """A diffusers/transformers folder: each shard file, ``<first>.index.json`` when more than one, ``config.json``.

    The index is named after the unsharded file name (``model-00001-of-00002.safetensors`` ->
    ``model.safetensors.index.json``), as transformers and diffusers do.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for filename, tensors in shards.items():
        write_safetensors_file(tensors, folder / filename)
        weight_map |= dict.fromkeys(tensors, filename)
    if len(shards) > 1:
        stem = next(iter(shards)).split("-0", 1)[0]
        index = {"metadata": {}, "weight_map": weight_map}
        (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def write_gguf_file(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    architecture: str,
    qtype: str = "Q8_0",
    metadata: Mapping[str, int | float] | None = None,
) -> Path:
    """A GGUF as city96's converters write them: 1-D and small tensors F32, other matrices ``qtype``
    (one gguf-py can write, :data:`GGUF_WRITABLE`), tensors of more dimensions F32; ``metadata``
    numbers under their full names (``llama.attention.head_count``)."""
    import gguf

    if qtype not in GGUF_WRITABLE:
        raise ValueError(f"gguf-py cannot quantize to {qtype}; choose one of {GGUF_WRITABLE}.")
    gtype = gguf.GGMLQuantizationType[qtype]
    path = parent_made(path)
    writer = gguf.GGUFWriter(str(path), architecture)
    for name, value in (metadata or {}).items():
        (writer.add_float32 if isinstance(value, float) else writer.add_uint32)(name, value)
    for key, value in tensors.items():
        array = value.float().numpy()
        if value.ndim != 2 or value.numel() <= _GGUF_SMALL:
            writer.add_tensor(key, array)
        elif qtype == "F16":
            writer.add_tensor(key, array.astype("float16"))
        else:
            writer.add_tensor(key, gguf.quants.quantize(array, gtype), raw_dtype=gtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
