"""Encoded prompts saved to and read from safetensors, so a prompt is encoded once and the 16 GB
LLM need not be loaded again to reuse it.

File layout: tensors ``positive.text_states`` [B, L, D], ``positive.text_mask`` [B, L] int64,
``positive.pooled`` [B, D2], and the same under ``negative.`` when there is a negative prompt;
one metadata entry, ``hunyuanvideo_text_embeds``, a JSON object with ``version`` and ``cfg_scale``
(a single entry keeps the file bytes identical from run to run). Tensors keep their dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint.safetensors_file import read_header
from ..conditioning import PromptEmbeds, TextEmbeds

METADATA_KEY = "hunyuanvideo_text_embeds"
VERSION = 1
_PARTS = ("text_states", "text_mask", "pooled")


def save_embeds(embeds: TextEmbeds, path: str | Path) -> Path:
    """Write ``embeds`` to ``path`` (a ``.safetensors`` file); returns the path."""
    from safetensors.torch import save_file

    tensors = {}
    for role, prompt in (("positive", embeds.positive), ("negative", embeds.negative)):
        if prompt is not None:
            # Copies: safetensors refuses tensors that share storage, as slices of one batch do.
            tensors |= {f"{role}.{part}": getattr(prompt, part).detach().cpu().clone() for part in _PARTS}
    metadata = {METADATA_KEY: json.dumps({"version": VERSION, "cfg_scale": embeds.cfg_scale})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_embeds(path: str | Path) -> TextEmbeds:
    """Read embeds written by :func:`save_embeds`; other safetensors files are refused by name."""
    from safetensors import safe_open

    path = Path(path)
    read_header(path)  # a truncated or damaged file is named as such, not by safetensors' bare message
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        info = (handle.metadata() or {}).get(METADATA_KEY)
        if info is None:
            raise ValueError(
                f"{path.name} is not a HunyuanVideo text-embeds file (it has no {METADATA_KEY!r} metadata; "
                f"{len(handle.keys())} tensors). Pick a file saved by HunyuanVideo Save Text Embeds."
            )
        info = json.loads(info)
        if info.get("version", 0) > VERSION:
            raise ValueError(f"{path.name} was written by a newer version of this pack (format {info['version']}).")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    prompts = {
        role: PromptEmbeds(**{part: tensors[f"{role}.{part}"] for part in _PARTS})
        for role in ("positive", "negative")
        if f"{role}.text_states" in tensors
    }
    return TextEmbeds(positive=prompts["positive"], negative=prompts.get("negative"), cfg_scale=info["cfg_scale"])
