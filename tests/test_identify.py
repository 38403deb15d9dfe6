"""Telling model files apart by their keys and shapes (hunyuan_model/identify.py)."""

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, expected_shapes, tencent_to_diffusers
from hunyuanvideo_pack.hunyuan_model.identify import (
    GGUF_ARCHITECTURES,
    MODEL_LOADER,
    TEXT_ENCODER_LOADER,
    VAE_LOADER,
    ModelKind,
    identify,
)
from hunyuanvideo_pack.hunyuan_model.vae import CausalVideoVAE, VAEConfig
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS, comfy_env

M = (4, 4)  # a shape for keys whose shape does not matter

# (keys -> shapes, kind): at least one file layout per kind, the way users' files name their tensors.
FILES = [
    ({"double_blocks.0.img_attn_qkv.lora_A.weight": M, "img_in.proj.weight": M}, ModelKind.LORA),
    ({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": M}, ModelKind.LORA),
    ({"transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": M}, ModelKind.LORA),
    ({"double_blocks.0.img_attn_qkv": (1,), "single_blocks.0.linear1": (1,)}, ModelKind.FP8_SCALE_MAP),
    ({"img_in.proj.weight": (3072, 16, 1, 2, 2), "double_blocks.0.img_attn_qkv.weight": M}, ModelKind.HUNYUAN_DIT),
    ({"txt_in.individual_token_refiner.blocks.0.norm1.weight": M}, ModelKind.HUNYUAN_DIT),
    ({"x_embedder.proj.weight": (3072, 16, 1, 2, 2), "context_embedder.token_refiner.x": M}, ModelKind.HUNYUAN_DIT),
    ({"img_in.proj.weight": (3072, 33, 1, 2, 2), "double_blocks.0.img_attn_qkv.weight": M}, ModelKind.HUNYUAN_DIT_I2V),
    ({"model.diffusion_model.img_in.proj.weight": (3072, 32, 1, 2, 2)}, ModelKind.HUNYUAN_DIT_I2V),
    ({"x_embedder.proj.weight": (3072, 33, 1, 2, 2)}, ModelKind.HUNYUAN_DIT_I2V),
    ({"img_in.proj.weight": (2048, 65, 1, 1, 1), "byt5_in.fc1.weight": M}, ModelKind.HUNYUAN_DIT_1_5),
    ({"x_embedder.proj.weight": (2048, 65, 1, 1, 1), "cond_type_embed.weight": M}, ModelKind.HUNYUAN_DIT_1_5),
    ({"decoder.conv_in.conv.weight": (512, 16, 3, 3, 3)}, ModelKind.HUNYUAN_VAE),
    ({"vae.decoder.conv_in.conv.weight": (512, 16, 3, 3, 3), "vae.decoder.up.0.block.0.x": M}, ModelKind.HUNYUAN_VAE),
    ({"decoder.conv_in.conv.weight": (1024, 32, 3, 3, 3)}, ModelKind.HUNYUAN_VAE_1_5),
    ({"decoder.conv_in.weight": M, "post_quant_conv.weight": M}, ModelKind.OTHER_VAE),
    ({"decoder.middle.0.residual.0.gamma": M}, ModelKind.OTHER_VAE),
    ({"text_model.embeddings.token_embedding.weight": M, "vision_model.encoder.layers.0.x": M}, ModelKind.CLIP_TEXT),
    ({"embeddings.token_embedding.weight": M, "encoder.layers.0.self_attn.q_proj.weight": M}, ModelKind.CLIP_TEXT),
    ({"token_embedding.weight": M, "transformer.resblocks.0.attn.in_proj_weight": M}, ModelKind.CLIP_TEXT),
    ({"encoder.block.0.layer.0.SelfAttention.q.weight": M, "encoder.embed_tokens.weight": M}, ModelKind.T5),
    ({"model.embed_tokens.weight": M, "model.layers.0.self_attn.q_proj.weight": M}, ModelKind.LLM),
    (
        {
            "language_model.model.embed_tokens.weight": M,
            "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight": M,
        },
        ModelKind.LLM,
    ),
    ({"vision_model.encoder.layers.0.self_attn.q_proj.weight": M}, ModelKind.CLIP_VISION),
    ({"double_blocks.0.img_attn.qkv.weight": M, "img_in.weight": M}, ModelKind.FLUX),
    ({"blocks.0.self_attn.q.weight": M, "patch_embedding.weight": M}, ModelKind.WAN),
    ({"adaln_single.linear.weight": M, "scale_shift_table": M}, ModelKind.LTXV),
    (
        {"model.diffusion_model.input_blocks.0.0.weight": M, "model.diffusion_model.label_emb.0.0.weight": M},
        ModelKind.SDXL,
    ),
    ({"model.diffusion_model.input_blocks.0.0.weight": M}, ModelKind.SD),
    ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": M}, ModelKind.SD3),
]


@pytest.mark.parametrize("shapes, kind", FILES)
def test_files_are_identified(shapes, kind):
    assert identify(shapes) is kind


def test_every_kind_is_covered_above():
    assert {kind for _, kind in FILES} == set(ModelKind)


@pytest.mark.parametrize("shapes", [{}, {"encoder.weight": M, "head.bias": (2,)}, {"time_in.scale": (1,)}])
def test_unknown_files_are_not_guessed(shapes):
    assert identify(shapes) is None


def test_a_prefix_the_reader_stripped_is_put_back():
    stripped = {"layers.0.self_attn.q_proj.weight": M, "norm.weight": (4,)}  # a Llama without embed_tokens
    assert identify(stripped) is None
    assert identify(stripped, prefix="model.") is ModelKind.LLM


def test_released_models_are_identified_from_their_own_keys():
    dit = expected_shapes(DiTConfig.released())
    assert identify(dit) is ModelKind.HUNYUAN_DIT
    diffusers = tencent_to_diffusers({key: torch.empty(shape, device="meta") for key, shape in dit.items()})
    assert identify({key: tuple(t.shape) for key, t in diffusers.items()}) is ModelKind.HUNYUAN_DIT
    assert identify(dict(dit, **{"img_in.proj.weight": (3072, 33, 1, 2, 2)})) is ModelKind.HUNYUAN_DIT_I2V
    with torch.device("meta"):
        vae = CausalVideoVAE(VAEConfig.released())
    assert identify({key: tuple(t.shape) for key, t in vae.state_dict().items()}) is ModelKind.HUNYUAN_VAE


def test_tiny_text_encoders_are_identified(tiny_text_models):
    llm, clip = tiny_text_models
    assert identify({key: tuple(t.shape) for key, t in llm.state_dict().items()}) is ModelKind.LLM
    assert identify({key: tuple(t.shape) for key, t in clip.state_dict().items()}) is ModelKind.CLIP_TEXT


def test_advice_names_the_node_and_input_or_why_none():
    assert ModelKind.LLM.advice(TEXT_ENCODER_LOADER) == "choose it as llm"
    assert ModelKind.LLM.advice(VAE_LOADER) == (
        "load it with HunyuanVideo Text Encoder Loader (HunyuanVideoTextEncoderLoader) from models/text_encoders, "
        "as its llm"
    )
    assert ModelKind.FLUX.advice(MODEL_LOADER) == "this pack runs HunyuanVideo only"


def test_loaders_and_inputs_named_in_messages_exist():
    for kind in ModelKind:
        if kind.loader is None:
            assert kind.note, kind
            continue
        node = NODE_CLASS_MAPPINGS[kind.loader.node]
        assert node.DISPLAY_NAME == kind.loader.title
        assert kind.loader.folder in comfy_env.MODEL_FOLDERS
        inputs = node.INPUT_TYPES()
        named = {*inputs["required"], *inputs.get("optional", {})}
        assert kind.note.split(",")[0] in named, kind


def test_gguf_architectures_name_their_family():
    assert GGUF_ARCHITECTURES["hyvid"] is ModelKind.HUNYUAN_DIT
    assert GGUF_ARCHITECTURES["t5encoder"] is ModelKind.T5 and GGUF_ARCHITECTURES["sdxl"] is ModelKind.SDXL
