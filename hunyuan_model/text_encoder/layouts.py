"""Where the text encoders sit in the files users have: key prefixes, found from a reader's keys.

Files and folders are opened by the pack's one reader (:func:`~..checkpoint.open_checkpoint`);
this module only finds each encoder's part in them.

Four layouts hold the same Llama weights under different prefixes (Tencent's text-only folder and
a ``LlamaForCausalLM`` save: ``model.``; the released LLaVA folder: ``language_model.model.``;
LLaVA saved by transformers 5: ``model.language_model.``; ComfyUI's single file: ``model.``), and
CLIP-L comes as a full ``CLIPModel`` folder or ComfyUI's ``clip_l.safetensors`` (``text_model.``,
or no prefix in a ``CLIPTextModel`` saved by transformers 5).
The prefix is found from the keys, so any of them loads through one path.
"""

from __future__ import annotations

from collections.abc import Iterable

_LLM_ANCHOR = "layers.0.self_attn.q_proj.weight"
_CLIP_ANCHOR = "encoder.layers.0.self_attn.q_proj.weight"


def llm_prefix(keys: Iterable[str]) -> str | None:
    """The prefix in front of ``LlamaModel`` names (``layers.N...``, ``embed_tokens``, ``norm``).

    LLaVA checkpoints hold a CLIP vision tower whose keys also end in ``layers.0.self_attn...``;
    the language model is the one with an ``embed_tokens`` beside its layers.
    """
    return _prefix(keys, _LLM_ANCHOR, "embed_tokens.weight")


def clip_prefix(keys: Iterable[str]) -> str | None:
    """The prefix in front of CLIP text-tower names (``embeddings.``, ``encoder.``, ``final_layer_norm.``).

    Usually ``text_model.``; transformers 5 saves a ``CLIPTextModel`` without it. A vision tower
    has the same encoder keys but patch embeddings instead of token embeddings.
    """
    return _prefix(keys, _CLIP_ANCHOR, "embeddings.token_embedding.weight")


def _prefix(keys: Iterable[str], anchor: str, sibling: str) -> str | None:
    """The first prefix (in key order) under which both ``anchor`` and ``sibling`` are keys."""
    keys = set(keys)
    for key in sorted(keys):
        if key.endswith(anchor) and key[: -len(anchor)] + sibling in keys:
            return key[: -len(anchor)]
    return None
