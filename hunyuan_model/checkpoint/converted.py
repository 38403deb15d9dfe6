"""Readers whose keys a converter renames on the fly (diffusers' DiT names -> Tencent's).

Wrap any reader holding diffusers keys (a diffusers folder, :class:`~.folder.FolderReader`, or a
single safetensors file) in :class:`ConvertedReader` with the DiT's ``diffusers_to_tencent``
converter to get Tencent keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from ..quant import StoredWeight
from .errors import CheckpointError
from .reader import CheckpointReader, TensorInfo, WrappedReader, plain_tensor

Converter = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


def key_group(key: str) -> str:
    """The unit a converter sees at once: the path up to the first block index, else its first part.

    ``transformer_blocks.3.attn.to_q.weight`` -> ``transformer_blocks.3``;
    ``context_embedder.token_refiner.refiner_blocks.0.norm1.weight`` ->
    ``context_embedder.token_refiner.refiner_blocks.0``; ``norm_out.linear.weight`` -> ``norm_out``.
    """
    match = re.match(r"(.*?\.\d+)\.", key)
    return match.group(1) if match else key.split(".", 1)[0]


class ConvertedReader(WrappedReader):
    """``reader`` seen through ``convert`` (a state-dict -> state-dict function), one key group at a time.

    Contract for ``convert``: pure torch (it also runs on ``meta`` tensors, which is how shapes are
    known without reading data), and local: the outputs of a key group (see :func:`key_group`)
    depend only on that group's inputs. Inputs come in stored dtype when plain (bf16/fp16/fp32),
    else dequantized to float32. Output tensors are new (renames may stay views of the file).
    Loading keys in :meth:`infos` order converts each group once.
    """

    def __init__(self, reader: CheckpointReader, convert: Converter, group: Callable[[str], str] = key_group) -> None:
        super().__init__(reader, "keys converted")
        self._convert = convert
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
            inputs = {key: plain_tensor(self._reader.load(key)) for key in keys}
        return self._convert(inputs)

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
