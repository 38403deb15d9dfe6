"""Finding, loading and checking the two tokenizers.

ComfyUI's single-file text encoders carry no tokenizer, so one is looked for beside the model, in
the model folder, and finally in the folders the caller adds (inside ComfyUI: the tokenizer files
ComfyUI itself ships). Llama-3's tokenizer is loaded as a plain fast tokenizer from its
``tokenizer.json``: transformers 5's ``LlamaTokenizerFast`` rewrites Llama-3's byte-level
pre-tokenizer and gives wrong ids (huggingface/transformers#45488).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

log = logging.getLogger("HunyuanVideo")

Kind = Literal["llm", "clip"]
# Llama-3 chat tokens the templates are written in; an LLM tokenizer must know each as one token.
LLAMA3_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
_BESIDE = {"llm": ("llava_llama3_tokenizer", "llama_tokenizer"), "clip": ("clip_l_tokenizer", "clip_tokenizer")}
_DIFFUSERS_SIBLING = {"llm": "tokenizer", "clip": "tokenizer_2"}


def tokenizer_candidates(model_path: Path, kind: Kind, extra_dirs: Sequence[Path] = ()) -> list[Path]:
    """Folders to look in, in order, for the tokenizer of the model at ``model_path``.

    A transformers folder holds its own tokenizer (or, in the diffusers layout, a ``tokenizer`` /
    ``tokenizer_2`` folder beside it); a single file ``name.safetensors`` may have one in
    ``name_tokenizer/`` or ``name/`` beside it, or in a generic folder such as ``llava_llama3_tokenizer/``.
    """
    model_path = Path(model_path)
    if model_path.is_dir():
        found = [model_path, model_path / "tokenizer", model_path.parent / _DIFFUSERS_SIBLING[kind]]
    else:
        stem, parent = model_path.name.split(".")[0], model_path.parent
        found = [parent / f"{stem}_tokenizer", parent / stem]
    found += [model_path.parent / name for name in _BESIDE[kind]]
    found += [Path(extra) for extra in extra_dirs]
    return list(dict.fromkeys(found))


def holds_tokenizer(folder: Path, kind: Kind) -> bool:
    if (folder / "tokenizer.json").is_file():
        return True
    return kind == "clip" and (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()


def find_tokenizer(model_path: Path, kind: Kind, extra_dirs: Sequence[Path] = ()) -> Path:
    """The first candidate folder that holds a tokenizer; the error lists every place looked."""
    candidates = tokenizer_candidates(model_path, kind, extra_dirs)
    for folder in candidates:
        if holds_tokenizer(folder, kind):
            return folder
    wanted = "tokenizer.json" if kind == "llm" else "tokenizer.json, or vocab.json and merges.txt,"
    looked = "\n  ".join(str(folder) for folder in candidates)
    model = "LLaVA-Llama-3 (llava-llama-3-8b)" if kind == "llm" else "CLIP-L (openai/clip-vit-large-patch14)"
    raise FileNotFoundError(
        f"no {kind.upper()} tokenizer found for {Path(model_path).name}: looked for {wanted} in\n  {looked}\n"
        f"Put the {model} tokenizer files in {candidates[0]} (or run inside ComfyUI, which ships them)."
    )


def load_tokenizer(folder: Path, kind: Kind):
    """The fast tokenizer in ``folder``: Llama-3's straight from ``tokenizer.json``, CLIP's as transformers builds it."""
    folder = Path(folder)
    if kind == "llm":
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), padding_side="right")
        if tokenizer.pad_token is None:
            # Padding is masked out; any id will do, and Llama-3 without LLaVA's <pad> has none.
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), padding_side="right")


def check_tokenizer(tokenizer, kind: Kind, vocab_rows: int, where: str) -> None:
    """Refuse a tokenizer whose ids do not fit the model (a CLIP tokenizer given to the LLM, or
    the other way round, or a Llama-2 tokenizer for a Llama-3 model)."""
    size = len(tokenizer)
    if size > vocab_rows:
        raise ValueError(
            f"the {kind.upper()} tokenizer from {where} has {size} tokens but the model's embedding has only "
            f"{vocab_rows} rows: it belongs to another model. Give the {kind.upper()} its own tokenizer."
        )
    if kind == "llm":
        unknown = [token for token in LLAMA3_TOKENS if token not in tokenizer.get_vocab()]
        if unknown:
            raise ValueError(
                f"the LLM tokenizer from {where} is not Llama-3's: it lacks {', '.join(unknown)}. "
                "HunyuanVideo's prompt templates need the LLaVA-Llama-3 tokenizer."
            )
    elif "<|startoftext|>" not in tokenizer.get_vocab():
        raise ValueError(f"the CLIP tokenizer from {where} is not CLIP's: it lacks <|startoftext|>.")
