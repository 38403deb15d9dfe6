"""Reading text-encoder checkpoints: one file or a transformers folder, tensors fetched by name.

Four layouts hold the same Llama weights under different prefixes (Tencent's text-only folder and
a ``LlamaForCausalLM`` save: ``model.``; the released LLaVA folder: ``language_model.model.``;
LLaVA saved by transformers 5: ``model.language_model.``; ComfyUI's single file: ``model.``), and
CLIP-L comes as a full ``CLIPModel`` folder or ComfyUI's ``clip_l.safetensors`` (``text_model.``,
or no prefix in a ``CLIPTextModel`` saved by transformers 5).
The prefix is found from the keys, so any of them loads through one path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..checkpoint.safetensors_file import read_header
from ..identify import TEXT_ENCODER_LOADER, ModelKind, identify

SAFETENSORS = (".safetensors", ".sft")
PICKLES = (".bin", ".pt", ".pth")

_LLM_ANCHOR = "layers.0.self_attn.q_proj.weight"
_CLIP_ANCHOR = "encoder.layers.0.self_attn.q_proj.weight"


class TensorSource:
    """The tensors of one checkpoint (a file or the weight files of a folder), read lazily by name."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.config: dict[str, Any] = {}
        self._where: dict[str, Any] = {}
        files = self._weight_files()
        if not files:
            raise FileNotFoundError(
                f"{self.path} holds no weights: expected a .safetensors file or a transformers folder with "
                "model*.safetensors (or pytorch_model*.bin) and config.json."
            )
        for file in files:
            self._index(file)

    def _weight_files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path} does not exist.")
        config_file = self.path / "config.json"
        if config_file.is_file():
            self.config = json.loads(config_file.read_text())
        for pattern in ("*.safetensors", "*.bin"):
            files = sorted(p for p in self.path.glob(pattern) if not p.name.startswith("."))
            if files:
                return files
        return []

    def _index(self, file: Path) -> None:
        suffix = file.suffix.lower()
        if suffix in SAFETENSORS:
            from safetensors import safe_open

            read_header(file)  # a truncated or damaged file is named as such, not by safetensors' bare message
            handle = safe_open(str(file), framework="pt", device="cpu")
            self._where.update(dict.fromkeys(handle.keys(), handle))
        elif suffix in PICKLES:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            self._where.update({key: state for key, value in state.items() if isinstance(value, torch.Tensor)})
        else:
            raise ValueError(f"{file.name}: unknown weight format {suffix!r}; expected .safetensors or .bin.")

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def get(self, key: str) -> torch.Tensor:
        holder = self._where[key]
        return holder[key] if isinstance(holder, dict) else holder.get_tensor(key)

    def shape(self, key: str) -> tuple[int, ...]:
        holder = self._where[key]
        if isinstance(holder, dict):
            return tuple(holder[key].shape)
        return tuple(holder.get_slice(key).get_shape())


def llm_prefix(keys: Iterable[str]) -> str | None:
    """The prefix in front of ``LlamaModel`` names (``layers.N...``, ``embed_tokens``, ``norm``).

    LLaVA checkpoints hold a CLIP vision tower whose keys also end in ``layers.0.self_attn...``;
    the language model is the one with an ``embed_tokens`` beside its layers.
    """
    keys = set(keys)
    for key in sorted(keys):
        if key.endswith(_LLM_ANCHOR):
            prefix = key[: -len(_LLM_ANCHOR)]
            if prefix + "embed_tokens.weight" in keys:
                return prefix
    return None


def clip_prefix(keys: Iterable[str]) -> str | None:
    """The prefix in front of CLIP text-tower names (``embeddings.``, ``encoder.``, ``final_layer_norm.``).

    Usually ``text_model.``; transformers 5 saves a ``CLIPTextModel`` without it. A vision tower
    has the same encoder keys but patch embeddings instead of token embeddings.
    """
    keys = set(keys)
    for key in sorted(keys):
        if key.endswith(_CLIP_ANCHOR):
            prefix = key[: -len(_CLIP_ANCHOR)]
            if prefix + "embeddings.token_embedding.weight" in keys:
                return prefix
    return None


def describe(source: TensorSource, wanted: ModelKind) -> str:
    """What the checkpoint is and where it belongs, for a message saying it is not the ``wanted`` encoder."""
    keys = source.keys()
    kind = identify({key: source.shape(key) for key in keys})
    shown = f"{len(keys)} tensors: {', '.join(sorted(keys)[:5])}, ..."
    if kind is None:
        return f"an unknown model ({shown})"
    if kind is wanted:  # some of its names, not the ones the loader starts from (cut short, OpenCLIP's layout...)
        return f"{kind.what}, but not in a layout this loader reads ({shown})"
    return f"{kind.what}; {kind.advice(TEXT_ENCODER_LOADER)}"
