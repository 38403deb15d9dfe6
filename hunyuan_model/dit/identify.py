"""Recognising what a checkpoint holds from its keys, so that a wrong file gets a message, never noise.

The DiT loader asks :func:`other_model` before anything else: a VAE, a text encoder, a LoRA or
another model family picked in the model loader is named, with the loader it belongs to.
:func:`is_scale_map` spots Tencent's FP8 scale map picked as the model, and :func:`is_diffusers_dit`
tells diffusers' HunyuanVideo keys from Tencent's. Keys are looked at
without regard to their prefix (``model.``, ``vae.``, ``transformer.``...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ..checkpoint import TensorInfo
from ..quant import keeps_base_precision

_LORA_FRAGMENTS = ("lora_A.", "lora_B.", "lora_up.", "lora_down.", ".lora.", "lora_unet_", ".hada_w1", ".lokr_w1")
# (key fragments, what the file is, what to do with it); the first row with a matching key wins.
# LoRAs come first: their keys carry the names of the model they change.
_OTHER_MODELS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        _LORA_FRAGMENTS,
        "a LoRA (a set of changes to a model, not a model)",
        "pick the HunyuanVideo transformer itself here",
    ),
    (
        ("decoder.conv_in.conv.weight",),
        "a HunyuanVideo VAE",
        "load it with HunyuanVideo VAE Loader (HunyuanVideoVAELoader) from models/vae",
    ),
    (
        ("decoder.conv_in.weight", "decoder.middle.0.", "post_quant_conv.weight", "decoder.up.0.block.0."),
        "a VAE of another model (an image VAE such as SD's or FLUX's, or Wan's video VAE)",
        "HunyuanVideo needs its own VAE in HunyuanVideo VAE Loader, and its transformer here",
    ),
    (  # before Llama: CLIP's encoder layers have the same attention names
        ("token_embedding.weight", "text_model.encoder.", "transformer.resblocks.0."),
        "a CLIP text encoder",
        "load it with HunyuanVideo Text Encoder Loader (HunyuanVideoTextEncoderLoader) from models/text_encoders",
    ),
    (
        ("layers.0.self_attn.q_proj.weight", "embed_tokens.weight"),
        "a Llama language model (such as HunyuanVideo's LLaVA-Llama-3 text encoder)",
        "load it with HunyuanVideo Text Encoder Loader (HunyuanVideoTextEncoderLoader) from models/text_encoders",
    ),
    (
        ("encoder.block.0.layer.0.SelfAttention.",),
        "a T5 text encoder (used by FLUX, Wan and LTX-Video, not by HunyuanVideo)",
        "HunyuanVideo's text encoders are LLaVA-Llama-3 and CLIP-L",
    ),
    (("vision_model.encoder.",), "a CLIP vision model", "HunyuanVideo text-to-video needs no vision encoder"),
    (("double_blocks.0.img_attn.qkv.", "img_in.weight"), "a FLUX image model", "choose a HunyuanVideo transformer"),
    (
        ("blocks.0.self_attn.q.weight", "patch_embedding.weight"),
        "a Wan video model",
        "choose a HunyuanVideo transformer",
    ),
    (("adaln_single.", "scale_shift_table"), "an LTX-Video model", "choose a HunyuanVideo transformer"),
    (("input_blocks.0.0.weight",), "a Stable Diffusion UNet", "choose a HunyuanVideo transformer"),
    (("joint_blocks.0.",), "a Stable Diffusion 3 model", "choose a HunyuanVideo transformer"),
)

_DIFFUSERS_MARKERS = ("x_embedder.proj.weight", "transformer_blocks.0.attn.add_q_proj.weight")
_TENCENT_MARKER = "img_in.proj.weight"


def other_model(keys: Iterable[str]) -> tuple[str, str] | None:
    """``(what the file is, what to do)`` when ``keys`` belong to a model other than HunyuanVideo's DiT.

    A file with the DiT's own keys (Tencent's or diffusers') is never reported, unless it is a LoRA for it.
    """
    keys = list(keys)
    is_lora = any(fragment in key for key in keys for fragment in _LORA_FRAGMENTS)
    if not is_lora and (any(key.endswith(_TENCENT_MARKER) for key in keys) or is_diffusers_dit(keys)):
        return None
    for fragments, what, advice in _OTHER_MODELS:
        if any(fragment in key for key in keys for fragment in fragments):
            return what, advice
    return None


def is_scale_map(infos: Mapping[str, TensorInfo]) -> bool:
    """Whether the tensors are Tencent's FP8 scale map: one number per block Linear, named without ``.weight``."""
    single = all(math.prod(info.shape) == 1 for info in infos.values())
    return bool(infos) and single and any(not keeps_base_precision(f"{key}.weight") for key in infos)


def is_diffusers_dit(keys: Iterable[str]) -> bool:
    """Whether ``keys`` (prefix removed) are a diffusers ``HunyuanVideoTransformer3DModel``'s."""
    keys = set(keys)
    return all(marker in keys for marker in _DIFFUSERS_MARKERS)
