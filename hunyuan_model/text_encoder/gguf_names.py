"""llama.cpp's GGUF names for the LLM, turned back into transformers' (city96's ``llava-llama-3-8B-*.gguf``).

llama.cpp renames a Llama's tensors (``blk.0.attn_q.weight`` for ``model.layers.0.self_attn.q_proj.weight``)
and permutes the rows of the query and key projections so that its RoPE kernel pairs neighbouring
rows; transformers pairs row ``i`` with row ``i + head_dim / 2`` of each head. :class:`LlamaCppReader`
renames and un-permutes as each tensor is read, on the stored form (GGUF rows are independent
blocks, so quantized weights stay quantized). Facts from city96/ComfyUI-GGUF ``loader.py``
(``LLAMA_SD_MAP``, ``llama_permute``: the reverse of llama.cpp's ``LlamaModel.permute``); head counts
come from the file's ``llama.attention.head_count`` and ``head_count_kv``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..checkpoint import CheckpointReader, KeyMappedReader
from ..quant import StoredWeight

_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
# GGUF metadata (after "<architecture>.") -> transformers config name, for LlmConfig.from_shapes.
_HINTS = {
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "rope.freq_base": "rope_theta",
    "context_length": "max_position_embeddings",
}


def gguf_hints(metadata: Mapping[str, object]) -> dict[str, object]:
    """The config values a llama.cpp GGUF states in its metadata, under transformers' names."""
    arch = metadata.get("general.architecture")
    return {name: metadata[f"{arch}.{key}"] for key, name in _HINTS.items() if f"{arch}.{key}" in metadata}


def llama_cpp_names(reader: CheckpointReader) -> CheckpointReader:
    """``reader`` with transformers names when it holds llama.cpp's (a :class:`LlamaCppReader`), else itself."""
    return LlamaCppReader(reader) if "token_embd.weight" in reader.infos() else reader


class LlamaCppReader(KeyMappedReader):
    """A llama.cpp-named Llama GGUF seen with ``LlamaForCausalLM`` names (see module doc)."""

    def __init__(self, reader: CheckpointReader) -> None:
        renamed = {_transformers_name(key): key for key in reader.infos()}
        super().__init__(reader, {ours: key for ours, key in renamed.items() if ours is not None}, "llama.cpp names")
        hints = gguf_hints(reader.metadata)
        self._heads = {  # rows of these projections were permuted per head
            "q_proj": int(hints.get("num_attention_heads", 32)),
            "k_proj": int(hints.get("num_key_value_heads", 8)),
        }

    def load(self, key: str) -> StoredWeight:
        stored = super().load(key)
        heads = self._heads.get(key.split(".")[-2])
        if heads is None:
            return stored
        rows = stored.data.reshape(stored.shape[0], -1)
        unpermuted = rows.reshape(heads, -1, 2, rows.shape[1]).transpose(1, 2).reshape(rows.shape)
        return StoredWeight(unpermuted.reshape(stored.data.shape), stored.shape, stored.qtype, stored.scale)


def _transformers_name(key: str) -> str | None:
    match = _BLOCK.fullmatch(key)
    if match:
        index, layer, kind = match.groups()
        name = _BLOCK_NAMES.get(layer)
        return None if name is None else f"model.layers.{index}.{name}.{kind}"
    base, _, kind = key.rpartition(".")
    return f"{_TOP_NAMES[base]}.{kind}" if base in _TOP_NAMES else None


def to_llama_cpp(state: Mapping[str, torch.Tensor], heads: int, kv_heads: int) -> dict[str, torch.Tensor]:
    """A ``LlamaModel`` state dict (no prefix) in llama.cpp's names and row order: what a GGUF converter writes."""
    ours = {v: k for k, v in _BLOCK_NAMES.items()}
    top = {v.removeprefix("model."): k for k, v in _TOP_NAMES.items()}
    out = {}
    for key, value in state.items():
        base, _, kind = key.rpartition(".")
        if base in top:
            out[f"{top[base]}.{kind}"] = value
            continue
        _, index, name = base.split(".", 2)
        layer = ours[name]
        count = {"attn_q": heads, "attn_k": kv_heads}.get(layer)
        if count is not None:  # llama.cpp's permute: rows i and i + d/2 of each head become neighbours
            value = value.reshape(count, 2, -1, *value.shape[1:]).transpose(1, 2).reshape(value.shape)
        out[f"blk.{index}.{layer}.{kind}"] = value
    return out
