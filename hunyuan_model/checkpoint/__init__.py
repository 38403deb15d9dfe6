"""Reading model files: safetensors, PyTorch ``.pt``, GGUF, diffusers folders, FP8 scale maps.

:func:`open_checkpoint` picks a reader from the file's contents. Every reader lists keys with
shapes and storage types before reading data (:meth:`CheckpointReader.infos`) and hands out
tensors as :class:`~..quant.StoredWeight` views of the memory-mapped file (:meth:`~CheckpointReader.load`).
:func:`load_weights` fills a model built on ``meta`` from a reader (or a state dict), tensor by
tensor, after :func:`check_shapes` compared keys and shapes.
Errors are :class:`CheckpointError` subclasses whose messages name the file and the failing part.
"""

from ..host_memory import drop_file_pages
from .diffusers import ConvertedReader, DiffusersReader, key_group, transformer_folder
from .errors import (
    CheckpointError,
    CorruptCheckpointError,
    MissingScaleMapError,
    UnsafeCheckpointError,
    WrongModelError,
)
from .fp8_map import (
    ScaleMappedReader,
    find_scale_map,
    load_scale_map,
    needs_scale_map,
    scale_map_candidates,
    with_scale_map,
)
from .gguf_file import GGUFReader
from .load_weights import check_shapes, load_weights
from .open_file import open_checkpoint, sniff_format
from .reader import DIT_PREFIXES, CheckpointReader, StateDictReader, TensorInfo, find_prefix
from .safetensors_file import SafetensorsReader
from .torch_file import TorchReader

__all__ = [
    "DIT_PREFIXES",
    "CheckpointError",
    "CheckpointReader",
    "ConvertedReader",
    "CorruptCheckpointError",
    "DiffusersReader",
    "GGUFReader",
    "MissingScaleMapError",
    "SafetensorsReader",
    "StateDictReader",
    "ScaleMappedReader",
    "TensorInfo",
    "TorchReader",
    "UnsafeCheckpointError",
    "WrongModelError",
    "check_shapes",
    "drop_file_pages",
    "find_prefix",
    "find_scale_map",
    "key_group",
    "load_scale_map",
    "load_weights",
    "needs_scale_map",
    "open_checkpoint",
    "scale_map_candidates",
    "sniff_format",
    "transformer_folder",
    "with_scale_map",
]
