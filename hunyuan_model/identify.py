"""What a checkpoint holds, read from its keys: one table behind every loader's "wrong file" message.

A VAE picked in the model loader, the LLM picked as CLIP, a LoRA or another model family: each loader
asks :func:`identify` and names what the file is and which node of this pack takes it (or why none
does). Signatures are key fragments found anywhere in a key, so prefixes (``vae.``,
``diffusion_model.``...) change nothing; a prefix that a reader stripped from every key (a text
encoder's ``model.``, which leaves ``layers.0...``) is put back. Shapes tell apart variants that share
their keys: image-to-video DiTs, the 32-channel VAE of HunyuanVideo 1.5, and Tencent's FP8 scale map.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from .quant.policy import keeps_base_precision


@dataclass(frozen=True)
class Loader:
    """A loader node of this pack and the ComfyUI models folder it lists."""

    title: str
    node: str
    folder: str

    def __str__(self) -> str:
        return f"{self.title} ({self.node})"


MODEL_LOADER = Loader("HunyuanVideo Model Loader", "HunyuanVideoModelLoader", "diffusion_models")
VAE_LOADER = Loader("HunyuanVideo VAE Loader", "HunyuanVideoVAELoader", "vae")
TEXT_ENCODER_LOADER = Loader("HunyuanVideo Text Encoder Loader", "HunyuanVideoTextEncoderLoader", "text_encoders")

_NOT_HUNYUAN = "this pack runs HunyuanVideo only"


class ModelKind(Enum):
    """A kind of model file: what it is (a phrase for messages) and the loader that takes it.

    ``note``: for a kind this pack loads, the loader input it goes in; otherwise why no loader takes it.
    """

    LORA = ("a LoRA (a set of changes to a model, not a model)", None, "pick the model itself")
    FP8_SCALE_MAP = (
        "an FP8 scale map (Tencent's *_fp8_map.pt)",
        MODEL_LOADER,
        "scale_map, with Tencent's FP8 weights (*_fp8.pt) as model_name",
    )
    HUNYUAN_DIT = ("a HunyuanVideo text-to-video transformer (DiT)", MODEL_LOADER, "model_name")
    HUNYUAN_DIT_I2V = (
        "a HunyuanVideo image-to-video transformer (DiT, such as Tencent's I2V or SkyReels)",
        MODEL_LOADER,
        "model_name, then HunyuanVideo Image To Video for the image",
    )
    HUNYUAN_DIT_1_5 = ("a HunyuanVideo 1.5 or HunyuanImage 2.1 transformer", None, "this pack runs HunyuanVideo 1.0")
    HUNYUAN_VAE = ("a HunyuanVideo VAE", VAE_LOADER, "vae_name")
    HUNYUAN_VAE_1_5 = (
        "the HunyuanVideo 1.5 VAE (32-channel latents)",
        None,
        "HunyuanVideo (1.0) needs its own 16-channel VAE",
    )
    OTHER_VAE = (
        "another model's VAE (an image VAE such as SD's or FLUX's, or Wan's video VAE)",
        None,
        "HunyuanVideo needs its own VAE",
    )
    CLIP_TEXT = ("a CLIP text encoder (such as clip_l.safetensors)", TEXT_ENCODER_LOADER, "clip")
    LLM = (
        "a Llama language model (such as HunyuanVideo's LLaVA-Llama-3 text encoder)",
        TEXT_ENCODER_LOADER,
        "llm",
    )
    T5 = (
        "a T5 text encoder (used by FLUX, Wan and LTX-Video, not by HunyuanVideo)",
        None,
        "HunyuanVideo's text encoders are LLaVA-Llama-3 and CLIP-L",
    )
    CLIP_VISION = ("a CLIP vision model", None, "HunyuanVideo text-to-video needs no vision encoder")
    FLUX = ("a FLUX image model", None, _NOT_HUNYUAN)
    WAN = ("a Wan video model", None, _NOT_HUNYUAN)
    LTXV = ("an LTX-Video model", None, _NOT_HUNYUAN)
    SDXL = ("a Stable Diffusion XL model", None, _NOT_HUNYUAN)
    SD = ("a Stable Diffusion 1.x or 2.x model", None, _NOT_HUNYUAN)
    SD3 = ("a Stable Diffusion 3 model", None, _NOT_HUNYUAN)

    def __init__(self, what: str, loader: Loader | None, note: str) -> None:
        self.what = what
        self.loader = loader
        self.note = note

    def advice(self, asking: Loader) -> str:
        """What to do with such a file, for ``asking``'s message saying it was picked in the wrong place."""
        if self.loader is None:
            return self.note
        if self.loader is asking:
            return f"choose it as {self.note}"
        return f"load it with {self.loader} from models/{self.loader.folder}, as its {self.note}"


# (key fragments, kind): the first row with a fragment in any key wins. LoRAs come first (their keys
# carry the names of the model they change), HunyuanVideo 1.5 before 1.0 (it kept some 1.0 names),
# text encoders before Llama (T5 may hold embed_tokens; CLIP's layers have Llama's attention names),
# Llama before CLIP vision (LLaVA holds a vision tower beside its language model).
_SIGNATURES: tuple[tuple[tuple[str, ...], ModelKind], ...] = (
    (("lora_A.", "lora_B.", "lora_up.", "lora_down.", ".lora.", "lora_unet_", ".hada_w1", ".lokr_w1"), ModelKind.LORA),
    (("byt5_in.", "cond_type_embed", "context_embedder_2."), ModelKind.HUNYUAN_DIT_1_5),
    (
        (
            "img_in.proj.weight",
            "double_blocks.0.img_attn_qkv.",
            "txt_in.individual_token_refiner.",
            "txt_in.input_embedder.",
            "x_embedder.proj.weight",
            "context_embedder.token_refiner.",
        ),
        ModelKind.HUNYUAN_DIT,
    ),
    (("decoder.conv_in.conv.weight",), ModelKind.HUNYUAN_VAE),
    (
        ("decoder.conv_in.weight", "decoder.middle.0.", "post_quant_conv.weight", "decoder.up.0.block.0."),
        ModelKind.OTHER_VAE,
    ),
    (("token_embedding.weight", "text_model.encoder.", "transformer.resblocks.0."), ModelKind.CLIP_TEXT),
    (("encoder.block.0.layer.0.SelfAttention.",), ModelKind.T5),
    (("embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"), ModelKind.LLM),
    (("vision_model.encoder.",), ModelKind.CLIP_VISION),
    (("double_blocks.0.img_attn.qkv.", "img_in.weight"), ModelKind.FLUX),
    (("blocks.0.self_attn.q.weight", "patch_embedding.weight"), ModelKind.WAN),
    (("adaln_single.", "scale_shift_table"), ModelKind.LTXV),
    (("label_emb.0.0.weight",), ModelKind.SDXL),
    (("input_blocks.0.0.weight",), ModelKind.SD),
    (("joint_blocks.0.",), ModelKind.SD3),
)

# (kind, keys ending so, input channels, variant): variants that share every key name with a kind
# above, told apart by the input channels (dimension 1) of one convolution.
_VARIANTS: tuple[tuple[ModelKind, tuple[str, ...], tuple[int, ...], ModelKind], ...] = (
    (ModelKind.HUNYUAN_DIT, ("img_in.proj.weight", "x_embedder.proj.weight"), (32, 33), ModelKind.HUNYUAN_DIT_I2V),
    (ModelKind.HUNYUAN_VAE, ("decoder.conv_in.conv.weight",), (32,), ModelKind.HUNYUAN_VAE_1_5),
)

# GGUF files name their model family in ``general.architecture`` (city96's converter, llama.cpp).
GGUF_ARCHITECTURES: dict[str, ModelKind] = {
    "hyvid": ModelKind.HUNYUAN_DIT,
    "llama": ModelKind.LLM,
    "clip": ModelKind.CLIP_TEXT,
    "t5": ModelKind.T5,
    "t5encoder": ModelKind.T5,
    "flux": ModelKind.FLUX,
    "wan": ModelKind.WAN,
    "ltxv": ModelKind.LTXV,
    "sd1": ModelKind.SD,
    "sdxl": ModelKind.SDXL,
    "sd3": ModelKind.SD3,
}


def identify(shapes: Mapping[str, Sequence[int]], prefix: str = "") -> ModelKind | None:
    """The kind of model whose tensors have these keys and shapes; None when no signature matches.

    ``prefix``: what a reader stripped from every key (a text encoder's ``model.``), put back for the signatures.
    """
    if _is_scale_map(shapes):
        return ModelKind.FP8_SCALE_MAP
    keys = [prefix + key for key in shapes]
    kind = next((kind for fragments, kind in _SIGNATURES if _has(keys, fragments)), None)
    for base, suffixes, channels, variant in _VARIANTS:
        if kind is base and any(_input_channels(shapes, suffix) in channels for suffix in suffixes):
            return variant
    return kind


def _has(keys: list[str], fragments: tuple[str, ...]) -> bool:
    return any(fragment in key for key in keys for fragment in fragments)


def _input_channels(shapes: Mapping[str, Sequence[int]], suffix: str) -> int | None:
    """Dimension 1 of the 5-D convolution weight whose key ends with ``suffix``."""
    found = (shape for key, shape in shapes.items() if key.endswith(suffix) and len(shape) == 5)
    shape = next(found, None)
    return None if shape is None else shape[1]


def _is_scale_map(shapes: Mapping[str, Sequence[int]]) -> bool:
    """Tencent's FP8 scale map: one number per block Linear, keyed by its module name (no prefix, no ``.weight``)."""
    single = all(math.prod(shape) == 1 for shape in shapes.values())
    return bool(shapes) and single and any(not keeps_base_precision(f"{key}.weight") for key in shapes)
