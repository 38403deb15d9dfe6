"""Reading model files for every model of the pack (DiT, LLM, CLIP, VAE): safetensors, PyTorch
``.pt``, GGUF, diffusers and transformers folders (sharded or not), FP8 scale maps.

:func:`open_checkpoint` picks a reader from the file's contents. Every reader lists keys with
shapes and storage types before reading data (:meth:`CheckpointReader.infos`) and hands out
tensors as :class:`~..quant.StoredWeight` views of the memory-mapped file (:meth:`~CheckpointReader.load`).
:func:`load_weights` fills a model built on ``meta`` from a reader (or a state dict), tensor by
tensor, after :func:`check_shapes` compared keys and shapes.
Errors are :class:`CheckpointError` subclasses whose messages name the file and the failing part.
"""

from ..host_memory import drop_file_pages
from .converted import ConvertedReader, key_group
from .errors import (
    CheckpointError,
    CorruptCheckpointError,
    MissingScaleMapError,
    UnsafeCheckpointError,
    WrongModelError,
    wrong_model,
)
from .folder import FolderReader, model_folder
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
from .reader import (
    DIT_PREFIXES,
    CheckpointReader,
    KeyMappedReader,
    StateDictReader,
    TensorInfo,
    find_prefix,
    plain_tensor,
)
from .safetensors_file import WEIGHT_SCALE_SUFFIXES, SafetensorsReader
from .torch_file import TorchReader

__all__ = [
    "DIT_PREFIXES",
    "CheckpointError",
    "CheckpointReader",
    "ConvertedReader",
    "CorruptCheckpointError",
    "FolderReader",
    "GGUFReader",
    "KeyMappedReader",
    "MissingScaleMapError",
    "SafetensorsReader",
    "StateDictReader",
    "ScaleMappedReader",
    "TensorInfo",
    "TorchReader",
    "WEIGHT_SCALE_SUFFIXES",
    "UnsafeCheckpointError",
    "WrongModelError",
    "check_shapes",
    "drop_file_pages",
    "find_prefix",
    "find_scale_map",
    "key_group",
    "load_scale_map",
    "load_weights",
    "model_folder",
    "needs_scale_map",
    "open_checkpoint",
    "plain_tensor",
    "scale_map_candidates",
    "sniff_format",
    "with_scale_map",
    "wrong_model",
]
