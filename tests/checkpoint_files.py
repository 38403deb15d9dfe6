"""Odd synthetic checkpoints for the file-layer tests: a few tensors of each kind, raw GGUF blocks,
diffusers folders of any content. Real-format DiT checkpoints come from ``hunyuan_model.tiny.dit_files``."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import torch

from hunyuanvideo_pack.hunyuan_model.tiny.dit_files import write_safetensors

HIDDEN = 256  # K-quant rows hold 256 weights


def tencent_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A few tensors of each kind a HunyuanVideo DiT has, Tencent keys, bf16 (final layer fp32 as released)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return (torch.randn(*shape, generator=g) / shape[-1] ** 0.5).bfloat16()

    return {
        "img_in.proj.weight": randn(HIDDEN, 16, 1, 2, 2),
        "img_in.proj.bias": randn(HIDDEN),
        "txt_in.input_embedder.weight": randn(HIDDEN, 64),
        "double_blocks.0.img_attn_qkv.weight": randn(3 * HIDDEN, HIDDEN),
        "double_blocks.0.img_attn_qkv.bias": randn(3 * HIDDEN),
        "double_blocks.0.img_attn_q_norm.weight": randn(32),
        "single_blocks.0.linear2.weight": randn(HIDDEN, 2 * HIDDEN),
        "final_layer.linear.weight": randn(64, HIDDEN).float(),
    }


# Byte offsets of fp16 fields per block: random bytes there could be NaN/inf.
HALF_FIELDS = {"Q8_0": [0], "Q4_0": [0], "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}


def random_blocks(qtype: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Valid random GGUF blocks for a ``[rows, cols]`` weight, in gguf-py's byte shape."""
    gtype = gguf.GGMLQuantizationType[qtype]
    block_size, type_size = gguf.GGML_QUANT_SIZES[gtype]
    rng = np.random.default_rng(seed)
    n_blocks = shape[0] * shape[1] // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype]:
        blocks[:, offset : offset + 2] = rng.normal(0, 0.01, n_blocks).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return blocks.reshape(shape[0], -1)


def write_gguf(
    path: Path,
    tensors: dict[str, np.ndarray | tuple[np.ndarray, str]],
    architecture: str | None = "hyvid",
    extra_fields: dict[str, list[int]] | None = None,
) -> Path:
    """A GGUF file; each value is a float array or ``(block bytes, type name)``."""
    writer = gguf.GGUFWriter(str(path), architecture or "unused")
    if architecture is None:
        writer.kv_data[0].pop("general.architecture")
    for name, values in (extra_fields or {}).items():
        writer.add_array(name, values)
    for name, value in tensors.items():
        if isinstance(value, tuple):
            data, qtype = value
            writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType[qtype])
        else:
            writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_diffusers(folder: Path, tensors: dict[str, torch.Tensor], shards: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "HunyuanVideoTransformer3DModel", "num_layers": 1}))
    if shards == 1:
        write_safetensors(tensors, folder / "diffusion_pytorch_model.safetensors")
        return folder
    keys = list(tensors)
    weight_map = {}
    for index in range(shards):
        name = f"diffusion_pytorch_model-{index + 1:05d}-of-{shards:05d}.safetensors"
        part = {key: tensors[key] for key in keys[index::shards]}
        write_safetensors(part, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder
