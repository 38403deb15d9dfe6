"""Building transformers' ``LlamaModel`` and ``CLIPTextModel`` from checkpoints in any layout.

Files are read by the pack's one weight pipeline, as the DiT's are: :func:`~..checkpoint.open_checkpoint`
(safetensors incl. ComfyUI's scaled FP8, ``.pt``/``.bin`` with ``weights_only``, GGUF, transformers
folders sharded or not) and :func:`~..checkpoint.load_weights`. Models are created on the ``meta``
device and take the checkpoint's tensors by assignment, so an 8B model is never randomly
initialised, and each weight is converted (cast, or quantized to FP8) one at a time: loading the
fp16 file into FP8 storage peaks near 8 GB, not 24.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..checkpoint import CheckpointReader, KeyMappedReader, load_weights, open_checkpoint, wrong_model
from ..checkpoint.load_weights import refuse_requantizing
from ..identify import TEXT_ENCODER_LOADER, ModelKind
from ..quant import CLIP_STORAGE, LLM_STORAGE, WeightStorage
from ..quant.nf4 import require_nf4, use_nf4_linears
from .config import ClipConfig, LlmConfig
from .gguf_names import gguf_hints, llama_cpp_names
from .layouts import clip_prefix, llm_prefix

log = logging.getLogger("HunyuanVideo")

LlmWeights = Literal["default", "fp8_e4m3fn", "nf4"]
LLM_WEIGHTS: tuple[str, ...] = LLM_STORAGE.names


def load_llm(
    path: str | Path,
    dtype: torch.dtype = torch.float16,
    weights: LlmWeights = "default",
    device: torch.device | str = "cpu",
) -> nn.Module:
    """LLaVA-Llama-3's language model as a ``transformers.LlamaModel`` on the CPU (NF4: on ``device``).

    ``path`` is a transformers folder (Tencent's text-only one or the full LLaVA one, whose vision
    tower is ignored), a single file (ComfyUI's ``llava_llama3_fp16.safetensors`` or
    ``llava_llama3_fp8_scaled.safetensors``) or a llama.cpp GGUF (city96's ``llava-llama-3-8b-v1_1-*.gguf``).
    ``weights`` (:data:`~..quant.LLM_STORAGE`): ``default`` stores everything in ``dtype`` (FP8 files
    are dequantized; GGUF blocks stay blocks, dequantized per layer); ``fp8_e4m3fn`` keeps the
    decoder's Linear weights in FP8 with a per-tensor scale (the file's own, or ``max|W|/448``);
    ``nf4`` is bitsandbytes 4-bit, CUDA only.
    """
    storage = LLM_STORAGE.pick(weights)
    if storage is WeightStorage.NF4:
        require_nf4(torch.device(device))  # before reading 16 GB
    reader, prefix = _open_part(path, _LLM)
    config = LlmConfig.from_shapes(_shapes_under(reader, prefix), _hints(reader))
    from transformers import LlamaModel

    with torch.device("meta"):
        model = LlamaModel(config.to_transformers()).to(dtype)
    # The rotary table is a computed buffer: build it for real.
    model.rotary_emb = type(model.rotary_emb)(config=model.config)
    linears = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}

    def linear_weight(key: str) -> bool:
        return key.endswith(".weight") and key.removesuffix(".weight") in linears

    names = KeyMappedReader(reader, {key: prefix + key for key in model.state_dict()})
    refuse_requantizing(names, storage, linear_weight)
    dense = WeightStorage.DEFAULT if storage is WeightStorage.NF4 else storage
    load_weights(model, names, dense, linear_weight=linear_weight)
    if storage is WeightStorage.NF4:
        use_nf4_linears(model, linears, dtype, torch.device(device))
    log.info("HunyuanVideo: LLM %s loaded: %s, %s weights", reader.path.name, config, weights)
    return _frozen(model)


def load_clip(path: str | Path, dtype: torch.dtype = torch.float16) -> nn.Module:
    """CLIP-L's text tower as a ``transformers.CLIPTextModel`` on the CPU, from a transformers
    folder (``CLIPModel`` or ``CLIPTextModel``), ComfyUI's ``clip_l.safetensors`` (also scaled FP8)
    or a GGUF holding those names."""
    storage = CLIP_STORAGE.pick("default")
    reader, prefix = _open_part(path, _CLIP)
    config = ClipConfig.from_shapes(_shapes_under(reader, prefix), _hints(reader))
    from transformers import CLIPTextModel

    with torch.device("meta"):
        model = CLIPTextModel(config.to_transformers()).to(dtype)
    # Position ids are a computed buffer: build them for real.
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta and name.endswith("position_ids"):
            owner = model.get_submodule(name.rpartition(".")[0])
            owner.position_ids = torch.arange(config.max_positions).expand(1, -1)
    # transformers 4 names the tower's modules text_model.*, transformers 5 does not.
    names = {key: prefix + key.removeprefix("text_model.") for key in model.state_dict()}
    load_weights(model, KeyMappedReader(reader, names), storage, linear_weight=lambda key: False)
    log.info("HunyuanVideo: CLIP %s loaded: %s", reader.path.name, config)
    return _frozen(model)


def _shapes_under(reader: CheckpointReader, prefix: str) -> dict[str, tuple[int, ...]]:
    return {key[len(prefix) :]: info.shape for key, info in reader.infos().items() if key.startswith(prefix)}


def _hints(reader: CheckpointReader) -> dict:
    """What a folder's ``config.json`` (or a GGUF's metadata) says beyond the shapes."""
    config = getattr(reader, "config", None) or gguf_hints(reader.metadata)
    return config.get("text_config", config)


@dataclass(frozen=True)
class _Part:
    """One text encoder as a file holds it: how to find it, and what to say when it is not there."""

    wanted: str
    kind: ModelKind
    gguf_architecture: str
    find_prefix: Callable[[Iterable[str]], str | None]
    hint: str


_LLM = _Part(
    "an LLM text encoder",
    ModelKind.LLM,
    "llama",
    llm_prefix,
    "Choose llava_llama3_fp16.safetensors, llava_llama3_fp8_scaled.safetensors or a "
    "llava-llama-3-8b transformers folder as the LLM.",
)
_CLIP = _Part(
    "a CLIP text encoder",
    ModelKind.CLIP_TEXT,
    "clip",
    clip_prefix,
    "Choose clip_l.safetensors or an openai/clip-vit-large-patch14 folder as CLIP.",
)


def _open_part(path: str | Path, part: _Part) -> tuple[CheckpointReader, str]:
    """The reader of ``path`` (llama.cpp names mapped back) and the prefix ``part`` sits under."""
    reader = llama_cpp_names(open_checkpoint(path, prefixes=(), architecture=part.gguf_architecture))
    prefix = part.find_prefix(reader.infos())
    if prefix is None:
        shapes = {key: info.shape for key, info in reader.infos().items()}
        raise wrong_model(
            reader.describe(), shapes, part.wanted, part.kind, TEXT_ENCODER_LOADER, reader.prefix, part.hint
        )
    return reader, prefix


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    return model.requires_grad_(False)


def module_bytes(model: nn.Module) -> int:
    """Bytes held by a model's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
