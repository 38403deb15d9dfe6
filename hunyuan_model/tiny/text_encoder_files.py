"""Tiny random text encoders written in the real file layouts, with the real tokenizers.

For tests and the headless demo, which have no 16 GB weights: the models are a few MB
(:meth:`LlmConfig.tiny`, :meth:`ClipConfig.tiny`) but keep the full vocabularies, so the real
tokenizers drive them. The tokenizers are rebuilt offline from files that PyPI packages ship:
Llama-3's tiktoken ranks in ``llama-models`` and CLIP's BPE merges in ``open-clip-torch``
(install both with ``--no-deps``; the Llama converter also needs ``tiktoken``). The demo, which
must run with the runtime requirements alone, uses byte-level stand-ins instead
(:func:`write_byte_tokenizer`): one token per byte, plus the special tokens the templates need.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..quant import quantize_fp8_scaled
from ..text_encoder.config import ClipConfig, LlmConfig
from ..text_encoder.gguf_names import to_llama_cpp
from .formats import parent_made, write_gguf_file, write_model_folder, write_safetensors_file

LlmLayout = Literal["text_folder", "llava_folder", "comfy_file", "comfy_fp8_scaled_file", "gguf_file"]
ClipLayout = Literal["clip_folder", "comfy_file"]
LLM_LAYOUTS: tuple[str, ...] = ("text_folder", "llava_folder", "comfy_file", "comfy_fp8_scaled_file", "gguf_file")
CLIP_LAYOUTS: tuple[str, ...] = ("clip_folder", "comfy_file")

# Llama-3.0 names for ids 128000-128255 (as in llava-llama-3-8b), then LLaVA's three added tokens.
_LLAMA3_SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    *(f"<|reserved_special_token_{i}|>" for i in range(4)),
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    "<|eot_id|>",
    *(f"<|reserved_special_token_{i}|>" for i in range(5, 251)),
]
_LLAVA_ADDED = ["<unk>", "<image>", "<pad>"]  # 128256, 128257, 128258


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = {"llama_models": "llama-models", "open_clip": "open-clip-torch"}[package]
        raise ModuleNotFoundError(
            f"building the real tokenizer offline needs the file {'/'.join(parts)} from the {pip_name} package; "
            f"install it with `pip install --no-deps {pip_name}`."
        )
    return Path(spec.submodule_search_locations[0], *parts)


def write_llama3_tokenizer(folder: str | Path) -> Path:
    """LLaVA-Llama-3's tokenizer (``tokenizer.json`` and its config, as the released folder has them)."""
    from tokenizers import AddedToken, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = TikTokenConverter(
        vocab_file=str(_package_file("llama_models", "llama3", "tokenizer.model"))
    ).converted()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _LLAMA3_SPECIAL + _LLAVA_ADDED]
    )
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", 128000)],
            ),
        ]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    special = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
    }
    # The released config names LlamaTokenizer, the class transformers 5 gets wrong: keep it so
    # that loading is tested against the real file.
    config = {**special, "tokenizer_class": "LlamaTokenizer", "padding_side": "right", "model_max_length": 8192}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return folder


def write_clip_tokenizer(folder: str | Path) -> Path:
    """CLIP-L's tokenizer: ``vocab.json`` and ``merges.txt`` built the way CLIP's SimpleTokenizer
    builds its vocabulary (byte-identical to the files ComfyUI ships in ``comfy/sd1_tokenizer``)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(_package_file("open_clip", "bpe_simple_vocab_16e6.txt.gz")).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    units = list(bytes_to_unicode().values())
    vocab = (
        units + [unit + "</w>" for unit in units] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    )
    ids = {token: index for index, token in enumerate(vocab)}
    (folder / "vocab.json").write_text(json.dumps(ids, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(" ".join(m) + "\n" for m in merges))
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    config = {**special, "tokenizer_class": "CLIPTokenizer", "do_lower_case": True, "model_max_length": 77}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return folder


def write_byte_tokenizer(folder: str | Path, kind: Literal["llm", "clip"]) -> Path:
    """A stand-in tokenizer with one token per byte and the model's special tokens, for the demo.

    ``llm``: Llama-3's chat tokens and LLaVA's ``<pad>``, a BOS in front, as Llama-3's tokenizer
    does. ``clip``: ``<|startoftext|>`` and ``<|endoftext|>`` around the text, the latter with the
    highest id, where CLIP pools. The ids fit the tiny models' full-size embeddings; the text
    encoders read these prompts as they read real ones, but the ids mean nothing to a real model.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={unit: index for index, unit in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if kind == "llm":
        special = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "pad_token": "<pad>"}
        added = [*_LLAMA3_SPECIAL[:10], "<pad>"]
        single = "<|begin_of_text|> $A"
    else:
        special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
        added = ["<|startoftext|>", "<|endoftext|>"]
        single = "<|startoftext|> $A <|endoftext|>"
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
    used = dict.fromkeys(token for token in special.values() if token in single)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(token, tokenizer.token_to_id(token)) for token in used]
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {**special, "tokenizer_class": "PreTrainedTokenizerFast", "padding_side": "right"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


def random_llm(config: LlmConfig | None = None, seed: int = 0) -> nn.Module:
    """A ``LlamaModel`` with random float32 weights scaled so that attention is far from uniform."""
    from transformers import LlamaModel

    torch.manual_seed(seed)
    model = LlamaModel((config or LlmConfig.tiny()).to_transformers())
    return _randomize(model, seed).eval()


def random_clip(config: ClipConfig | None = None, seed: int = 0) -> nn.Module:
    """A ``CLIPTextModel`` with random float32 weights."""
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    model = CLIPTextModel((config or ClipConfig.tiny()).to_transformers())
    return _randomize(model, seed).eval()


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim >= 2:
                # Embeddings unit-scaled, weights 1/sqrt(fan_in): outputs stay O(1) and logits spread out.
                is_embedding = "embed" in name or "embedding" in name
                parameter.copy_(noise if is_embedding else noise / parameter.shape[1] ** 0.5)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            else:
                parameter.copy_(1.0 + 0.1 * noise)
    return model.requires_grad_(False)


def write_llm(
    model: nn.Module,
    path: str | Path,
    layout: LlmLayout,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Save a ``LlamaModel`` the way one of the released LLM checkpoints is laid out.

    ``text_folder``: Tencent's ``llava-llama-3-8b-text-encoder-tokenizer`` (a ``LlamaForCausalLM``
    save, two shards). ``llava_folder``: ``llava-llama-3-8b-v1_1-transformers`` (legacy
    ``language_model.model.*`` keys, with a vision tower and projector). ``comfy_file`` /
    ``comfy_fp8_scaled_file``: ComfyUI's ``llava_llama3_fp16`` / ``llava_llama3_fp8_scaled``
    single files. ``gguf_file``: city96's llama.cpp GGUF (``llava-llama-3-8B-v1_1-Q8_0.gguf``: llama.cpp
    names and row order, Q8_0 matrices). Folders get the tokenizer files in them; a single file gets
    them in ``<name>_tokenizer/`` beside it when ``tokenizer_dir`` is given.
    """
    path = Path(path)
    weights = {name: tensor.to(dtype).contiguous() for name, tensor in model.state_dict().items()}
    lm_head = torch.zeros(model.config.vocab_size, model.config.hidden_size, dtype=dtype)
    config = _llama_config_dict(model)
    if layout == "text_folder":
        tensors = {f"model.{name}": tensor for name, tensor in weights.items()} | {"lm_head.weight": lm_head}
        layers = {k: v for k, v in tensors.items() if ".layers." in k}
        rest = {k: v for k, v in tensors.items() if k not in layers}
        shards = {"model-00001-of-00002.safetensors": layers, "model-00002-of-00002.safetensors": rest}
        write_model_folder(path, shards, {**config, "architectures": ["LlamaForCausalLM"]})
    elif layout == "llava_folder":
        tensors = {f"language_model.model.{name}": tensor for name, tensor in weights.items()}
        tensors |= {"language_model.lm_head.weight": lm_head, **_llava_vision_parts(dtype)}
        llava = {
            "architectures": ["LlavaForConditionalGeneration"],
            "model_type": "llava",
            "image_token_index": 128257,
            "pad_token_id": 128258,
            "text_config": {**config, "architectures": ["LlamaForCausalLM"]},
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 8, "num_hidden_layers": 1},
        }
        write_model_folder(path, {"model.safetensors": tensors}, llava)
    elif layout in ("comfy_file", "comfy_fp8_scaled_file", "gguf_file"):
        if layout == "gguf_file":
            _write_llama_cpp_gguf(model, path)
        else:
            tensors = {f"model.{name}": tensor for name, tensor in weights.items()}
            write_safetensors_file(_scaled_fp8(tensors, model) if layout == "comfy_fp8_scaled_file" else tensors, path)
        return _with_tokenizer(path, tokenizer_dir, path.parent / f"{path.name.split('.')[0]}_tokenizer")
    else:
        raise ValueError(f"unknown LLM layout {layout!r}; expected one of {LLM_LAYOUTS}.")
    return _with_tokenizer(path, tokenizer_dir, path)


def write_clip(
    model: nn.Module,
    path: str | Path,
    layout: ClipLayout,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Save a ``CLIPTextModel`` as ``openai/clip-vit-large-patch14`` (``clip_folder``: a whole
    ``CLIPModel`` with a vision tower) or as ComfyUI's ``clip_l.safetensors`` (``comfy_file``)."""
    path = Path(path)
    # Released files name the tower text_model.* whatever transformers calls it today.
    tensors = {
        "text_model." + name.removeprefix("text_model."): tensor.to(dtype).contiguous()
        for name, tensor in model.state_dict().items()
    }
    hidden = model.config.hidden_size
    tensors["text_projection.weight"] = torch.zeros(hidden, hidden, dtype=dtype)
    if layout == "comfy_file":
        write_safetensors_file(tensors, parent_made(path))
        return _with_tokenizer(path, tokenizer_dir, path.parent / f"{path.name.split('.')[0]}_tokenizer")
    if layout != "clip_folder":
        raise ValueError(f"unknown CLIP layout {layout!r}; expected one of {CLIP_LAYOUTS}.")
    tensors |= {
        "vision_model.encoder.layers.0.self_attn.q_proj.weight": torch.ones(8, 8, dtype=dtype),
        "visual_projection.weight": torch.ones(8, 8, dtype=dtype),
        "logit_scale": torch.ones((), dtype=dtype),
    }
    text_config = {key: value for key, value in model.config.to_dict().items() if not key.startswith("_")}
    clip = {"architectures": ["CLIPModel"], "model_type": "clip", "text_config": text_config, "vision_config": {}}
    write_model_folder(path, {"model.safetensors": tensors}, clip)
    return _with_tokenizer(path, tokenizer_dir, path)


def _with_tokenizer(path: Path, tokenizer_dir: str | Path | None, where: Path) -> Path:
    """``path``, after copying the tokenizer files (if any) to ``where``: into a folder, or beside a single file."""
    if tokenizer_dir is not None:
        shutil.copytree(tokenizer_dir, where, dirs_exist_ok=True)
    return path


def _llama_config_dict(model: nn.Module) -> dict:
    config = {key: value for key, value in model.config.to_dict().items() if not key.startswith("_")}
    return {**config, "model_type": "llama", "torch_dtype": "float16"}


def _llava_vision_parts(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A stand-in vision tower and projector: the loader must skip these."""
    return {
        "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight": torch.ones(8, 8, dtype=dtype),
        "vision_tower.vision_model.embeddings.patch_embedding.weight": torch.ones(8, 3, 2, 2, dtype=dtype),
        "multi_modal_projector.linear_1.weight": torch.ones(8, 8, dtype=dtype),
    }


def _scaled_fp8(tensors: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """ComfyUI's scaled_fp8 layout: decoder Linear weights in float8_e4m3fn with a float32
    ``scale_weight`` each, everything else as it was, and an empty ``scaled_fp8`` marker."""
    linears = {f"model.{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    out = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for name, tensor in tensors.items():
        if name in linears:
            out[name], scale = quantize_fp8_scaled(tensor)
            out[name.removesuffix(".weight") + ".scale_weight"] = scale.reshape(())
        else:
            out[name] = tensor
    return out


def _write_llama_cpp_gguf(model: nn.Module, path: Path) -> None:
    config = model.config
    metadata = {
        "llama.attention.head_count": config.num_attention_heads,
        "llama.attention.head_count_kv": config.num_key_value_heads,
        "llama.attention.key_length": config.head_dim,
        "llama.attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        "llama.rope.freq_base": float(config.rope_parameters["rope_theta"]),
    }
    state = to_llama_cpp(model.state_dict(), config.num_attention_heads, config.num_key_value_heads)
    write_gguf_file(state, path, "llama", "Q8_0", metadata)
