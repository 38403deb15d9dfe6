"""Tiny random DiTs written in the real checkpoint formats, for tests and the headless demo.

No real weights exist where tests run, so :func:`random_transformer` makes a few-MB DiT and the
``write_*`` functions save its state dict (Tencent keys) exactly as the released files are laid
out: Tencent's ``.pt``, Tencent's FP8 release with its scale map, safetensors with or without a
prefix, ComfyUI's scaled FP8, kijai's plain-cast FP8, diffusers folders and files, and city96's
GGUF. Each returns the path written; every format loads with :func:`..dit.load_transformer`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..dit import DiTConfig, HunyuanVideoTransformer, init_random_weights, tencent_to_diffusers
from ..quant import keeps_base_precision, quantize_fp8_scaled
from .formats import parent_made, write_gguf_file, write_model_folder, write_safetensors_file

StateDict = Mapping[str, torch.Tensor]


def demo_config() -> DiTConfig:
    """The tiny DiT that fits the tiny text encoders (:mod:`.text_encoder_files`): LLM and CLIP widths."""
    from ..text_encoder.config import ClipConfig, LlmConfig

    return DiTConfig.tiny(text_dim=LlmConfig.tiny().hidden_size, pooled_dim=ClipConfig.tiny().hidden_size)


def random_transformer(config: DiTConfig | None = None, seed: int = 0) -> HunyuanVideoTransformer:
    """A float32 DiT (default :func:`demo_config`) with random weights rounded to bfloat16 values.

    The rounding makes a bf16 file hold exactly this model, so it is the reference every format
    is compared with.
    """
    model = init_random_weights(HunyuanVideoTransformer(config or demo_config(), dtype=torch.float32), seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.bfloat16())
    return model.eval()


def release_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s tensors as Tencent's bf16 release stores them: bfloat16, ``final_layer.linear`` float32."""
    return {
        key: value.float() if key.startswith("final_layer.linear.") else value.bfloat16()
        for key, value in model.state_dict().items()
    }


def write_tencent_pt(state: StateDict, path: str | os.PathLike, wrapper: str | None = "module") -> Path:
    """``mp_rank_00_model_states.pt``: ``{wrapper: state}`` (``None``: a bare state dict)."""
    path = parent_made(path)
    torch.save(dict(state) if wrapper is None else {wrapper: dict(state)}, path)
    return path


def write_safetensors(
    state: StateDict, path: str | os.PathLike, prefix: str = "", dtype: torch.dtype | None = None
) -> Path:
    """Tencent keys under ``prefix`` (``model.diffusion_model.`` is ComfyUI's), optionally cast to ``dtype``."""
    tensors = {prefix + key: value if dtype is None else value.to(dtype) for key, value in state.items()}
    return write_safetensors_file(tensors, path)


def fp8_release_tensors(state: StateDict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Tencent's FP8 recipe: ``(weights, scale map)``; block Linear weights divided by ``max|W| / 448``.

    The map holds one float32 ``[1]`` per layer, keyed by module name (no ``.weight``).
    """
    weights, scales = dict(state), {}
    for key, value in state.items():
        if not keeps_base_precision(key):
            weights[key], scale = quantize_fp8_scaled(value)
            scales[key.removesuffix(".weight")] = scale.reshape(1)
    return weights, scales


def write_fp8_release(state: StateDict, path: str | os.PathLike) -> tuple[Path, Path]:
    """Tencent's ``*_fp8.pt`` (``{"module": ...}``) and, beside it, its ``*_fp8_map.pt``."""
    path = parent_made(path)
    weights, scales = fp8_release_tensors(state)
    torch.save({"module": weights}, path)
    map_path = path.with_name(path.name.replace(".pt", "_map.pt"))
    torch.save(scales, map_path)
    return path, map_path


def write_scaled_fp8(state: StateDict, path: str | os.PathLike, prefix: str = "model.diffusion_model.") -> Path:
    """ComfyUI's scaled FP8 safetensors: ``scaled_fp8`` marker, per-layer float32 ``scale_weight``."""
    weights, scales = fp8_release_tensors(state)
    tensors = {**weights, "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    tensors |= {f"{layer}.scale_weight": scale.reshape(()) for layer, scale in scales.items()}
    return write_safetensors(tensors, path, prefix)


def write_fp8_cast(state: StateDict, path: str | os.PathLike, dtype: torch.dtype = torch.float8_e4m3fn) -> Path:
    """kijai's FP8 files: block Linear weights cast to ``dtype`` without a scale, the rest as it was."""
    tensors = {key: value if keeps_base_precision(key) else value.to(dtype) for key, value in state.items()}
    return write_safetensors(tensors, path)


def write_diffusers(state: StateDict, path: str | os.PathLike, shards: int = 1) -> Path:
    """A diffusers ``HunyuanVideoTransformer3DModel``: a folder with ``config.json`` and ``shards``
    safetensors files (an index when more than one), or one ``.safetensors`` file when ``path`` ends so."""
    path = Path(path)
    tensors = tencent_to_diffusers(state)
    if path.suffix == ".safetensors":
        return write_safetensors(tensors, path)
    keys = list(tensors)
    parts = {}
    for index in range(shards):
        name = "diffusion_pytorch_model.safetensors"
        if shards > 1:
            name = f"diffusion_pytorch_model-{index + 1:05d}-of-{shards:05d}.safetensors"
        parts[name] = {key: tensors[key] for key in keys[index::shards]}
    write_model_folder(path, parts, _diffusers_config(state))
    return path


def _diffusers_config(state: StateDict) -> dict:
    c = DiTConfig.from_state_dict(state)
    return {
        "_class_name": "HunyuanVideoTransformer3DModel",
        "in_channels": c.in_channels,
        "out_channels": c.out_channels,
        "num_attention_heads": c.heads,
        "attention_head_dim": c.head_dim,
        "num_layers": c.double_blocks,
        "num_single_layers": c.single_blocks,
        "num_refiner_layers": c.refiner_blocks,
        "mlp_ratio": c.mlp_hidden / c.hidden_size,
        "patch_size": c.patch_size[1],
        "patch_size_t": c.patch_size[0],
        "guidance_embeds": c.guidance_embed,
        "text_embed_dim": c.text_dim,
        "pooled_projection_dim": c.pooled_dim,
        "rope_theta": c.rope_theta,
        "rope_axes_dim": list(c.rope_dim_list),
    }


def write_gguf(state: StateDict, path: str | os.PathLike, qtype: str = "Q8_0") -> Path:
    """city96's HunyuanVideo GGUF: architecture ``hyvid``, Tencent keys, matrices quantized to ``qtype``.

    As city96's files: 1-D and small tensors are F32, the 5-D ``img_in.proj.weight`` a real 5-D F32
    tensor, every other matrix (embedders included) ``qtype`` (one gguf-py can write, :data:`.formats.GGUF_WRITABLE`).
    """
    return write_gguf_file(state, path, "hyvid", qtype)
