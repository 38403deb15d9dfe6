"""Building transformers' ``LlamaModel`` and ``CLIPTextModel`` from checkpoints in any layout.

Models are created on the ``meta`` device and take the checkpoint's tensors by assignment, so an
8B model is never randomly initialised, and each weight is converted (cast, or quantized to FP8)
one at a time: loading the fp16 file into FP8 storage peaks near 8 GB, not 24.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..identify import ModelKind
from .checkpoint import TensorSource, clip_prefix, describe, llm_prefix
from .config import ClipConfig, LlmConfig
from .quant import FP8, dequantize_fp8, quantize_fp8, require_nf4, use_fp8_linears, use_nf4_linears

log = logging.getLogger("HunyuanVideo")

LlmWeights = Literal["default", "fp8_e4m3fn", "nf4"]
LLM_WEIGHTS: tuple[str, ...] = ("default", "fp8_e4m3fn", "nf4")
_SCALE_SUFFIXES = (".scale_weight", ".weight_scale")  # ComfyUI's scaled_fp8 files, newer ComfyUI quant files


def load_llm(
    path: str | Path,
    dtype: torch.dtype = torch.float16,
    weights: LlmWeights = "default",
    device: torch.device | str = "cpu",
) -> nn.Module:
    """LLaVA-Llama-3's language model as a ``transformers.LlamaModel`` on the CPU (NF4: on ``device``).

    ``path`` is a transformers folder (Tencent's text-only one or the full LLaVA one, whose vision
    tower is ignored) or a single file (ComfyUI's ``llava_llama3_fp16.safetensors`` or
    ``llava_llama3_fp8_scaled.safetensors``). ``weights``: ``default`` stores everything in
    ``dtype`` (FP8 files are dequantized); ``fp8_e4m3fn`` keeps the decoder's Linear weights in FP8
    with a per-tensor scale (the file's own, or ``max|W|/448``); ``nf4`` is bitsandbytes 4-bit, CUDA only.
    """
    if weights not in LLM_WEIGHTS:
        raise ValueError(f"unknown LLM weight storage {weights!r}; expected one of {LLM_WEIGHTS}.")
    if weights == "nf4":
        require_nf4(torch.device(device))  # before reading 16 GB
    source = TensorSource(Path(path))
    prefix = llm_prefix(source.keys())
    if prefix is None:
        raise ValueError(
            f"{source.path.name} is not an LLM text encoder: it is {describe(source, ModelKind.LLM)}. "
            "Choose llava_llama3_fp16.safetensors, llava_llama3_fp8_scaled.safetensors or a "
            "llava-llama-3-8b transformers folder as the LLM."
        )
    hints = source.config.get("text_config", source.config)
    shapes = {key[len(prefix) :]: source.shape(key) for key in source.keys() if key.startswith(prefix)}
    config = LlmConfig.from_shapes(shapes, hints)
    from transformers import LlamaModel

    with torch.device("meta"):
        model = LlamaModel(config.to_transformers())
    linears = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    state = {}
    for name in model.state_dict():
        module_name, _, kind = name.rpartition(".")
        tensor, scale = _read(source, prefix + name)
        if module_name in linears and kind == "weight" and weights == "fp8_e4m3fn":
            state[name], state[f"{module_name}.scale"] = (
                (tensor, scale) if tensor.dtype == FP8 else quantize_fp8(tensor)
            )
        else:
            state[name] = dequantize_fp8(tensor, scale, dtype) if tensor.dtype == FP8 else tensor.to(dtype)
    if weights == "fp8_e4m3fn":
        use_fp8_linears(model, linears)
    _assign(model, state, source)
    # The rotary table is a computed buffer, still on meta: build it for real.
    model.rotary_emb = type(model.rotary_emb)(config=model.config)
    if weights == "nf4":
        use_nf4_linears(model, linears, dtype, torch.device(device))
    log.info("HunyuanVideo: LLM %s loaded: %s, %s weights", source.path.name, config, weights)
    return _frozen(model)


def load_clip(path: str | Path, dtype: torch.dtype = torch.float16) -> nn.Module:
    """CLIP-L's text tower as a ``transformers.CLIPTextModel`` on the CPU, from a transformers
    folder (``CLIPModel`` or ``CLIPTextModel``) or ComfyUI's ``clip_l.safetensors``."""
    source = TensorSource(Path(path))
    prefix = clip_prefix(source.keys())
    if prefix is None:
        raise ValueError(
            f"{source.path.name} is not a CLIP text encoder: it is {describe(source, ModelKind.CLIP_TEXT)}. "
            "Choose clip_l.safetensors or an openai/clip-vit-large-patch14 folder as CLIP."
        )
    hints = source.config.get("text_config", source.config)
    shapes = {key[len(prefix) :]: source.shape(key) for key in source.keys() if key.startswith(prefix)}
    config = ClipConfig.from_shapes(shapes, hints)
    from transformers import CLIPTextModel

    with torch.device("meta"):
        model = CLIPTextModel(config.to_transformers())
    state = {}
    for name in model.state_dict():
        # transformers 4 names the tower's modules text_model.*, transformers 5 does not.
        tensor, scale = _read(source, prefix + name.removeprefix("text_model."))
        state[name] = dequantize_fp8(tensor, scale, dtype) if tensor.dtype == FP8 else tensor.to(dtype)
    _assign(model, state, source)
    # Position ids are a computed buffer, still on meta.
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta and name.endswith("position_ids"):
            owner = model.get_submodule(name.rpartition(".")[0])
            owner.position_ids = torch.arange(config.max_positions).expand(1, -1)
    log.info("HunyuanVideo: CLIP %s loaded: %s", source.path.name, config)
    return _frozen(model)


def _read(source: TensorSource, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A tensor and its FP8 scale (1 when the file has none)."""
    if key not in source:
        raise ValueError(
            f"{source.path.name} is incomplete or not a released text encoder: it has no tensor {key!r}. "
            "Download the file again if it was cut short."
        )
    base = key.removesuffix(".weight")
    scales = [base + suffix for suffix in _SCALE_SUFFIXES if base + suffix in source]
    scale = source.get(scales[0]).float().reshape(()) if scales else torch.ones(())
    return source.get(key), scale


def _assign(model: nn.Module, state: dict[str, torch.Tensor], source: TensorSource) -> None:
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ValueError(f"{source.path.name} does not fit the model its shapes describe: {error}") from error


def _frozen(model: nn.Module) -> nn.Module:
    model.eval()
    model.requires_grad_(False)
    left = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if left:
        raise RuntimeError(f"internal error: tensors left unloaded: {left[:5]}")
    return model


def module_bytes(model: nn.Module) -> int:
    """Bytes held by a model's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
