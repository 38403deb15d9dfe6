"""Image-to-video DiTs: the variant read from the weights, and forward parity with diffusers for each."""

from __future__ import annotations

import logging

import pytest
import torch
from test_dit import FP32_TOLERANCE, diffusers_model, relative_error

from hunyuanvideo_pack.hunyuan_model.checkpoint import CheckpointError
from hunyuanvideo_pack.hunyuan_model.dit import (
    DiTConfig,
    HunyuanVideoTransformer,
    init_random_weights,
    load_transformer,
    open_transformer,
    tencent_to_diffusers,
)
from hunyuanvideo_pack.hunyuan_model.dit.config import infer_image_condition
from hunyuanvideo_pack.hunyuan_model.tiny import dit_files as tiny

VARIANTS = {
    "latent_concat": DiTConfig.tiny(in_channels=33, guidance_embed=False, image_condition="latent_concat"),
    "token_replace": DiTConfig.tiny(guidance_embed=False, image_condition="token_replace"),
    "skyreels_concat": DiTConfig.tiny(in_channels=32, image_condition="skyreels_concat"),
}


def make_inputs(config: DiTConfig, seed: int = 3) -> dict[str, torch.Tensor]:
    """Two prompts padded to 12 tokens (7 and 10 real), a 3x8x8 latent of the model's input channels."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(2, 12, dtype=torch.int64)
    mask[0, :7], mask[1, :10] = 1, 1
    return dict(
        latents=torch.randn(2, config.in_channels, 3, 8, 8, generator=g),
        timestep=torch.tensor([700.0, 250.0]),
        text_states=torch.randn(2, 12, config.text_dim, generator=g),
        text_mask=mask,
        pooled_text=torch.randn(2, config.pooled_dim, generator=g),
    )


def pair(config: DiTConfig, seed: int = 1):
    ours = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=seed)
    theirs = diffusers_model(config)
    theirs.load_state_dict(tencent_to_diffusers(ours.state_dict()), strict=True)
    return ours, theirs


def forwards(ours, theirs, x: dict, guidance: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    mine = ours(**x, guidance=guidance).float()
    theirs_guidance = None
    if guidance is not None:
        theirs_guidance = torch.full((x["latents"].shape[0],), guidance).to(torch.bfloat16) * 1000.0
    with torch.inference_mode():
        reference = theirs(
            hidden_states=x["latents"],
            timestep=x["timestep"],
            encoder_hidden_states=x["text_states"],
            encoder_attention_mask=x["text_mask"],
            pooled_projections=x["pooled_text"],
            guidance=theirs_guidance,
            return_dict=False,
        )[0]
    return mine, reference.float()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_matches_diffusers_in_float32(variant):
    config = VARIANTS[variant]
    ours, theirs = pair(config)
    x = make_inputs(config)
    mine, reference = forwards(ours, theirs, x, 6.0 if config.guidance_embed else None)
    assert mine.shape == (2, 16, 3, 8, 8)
    assert relative_error(mine, reference) <= FP32_TOLERANCE
    # One prompt alone (its padding dropped) matches too.
    one = {k: v[1:] for k, v in x.items()}
    mine_one, reference_one = forwards(ours, theirs, one, 6.0 if config.guidance_embed else None)
    assert relative_error(mine_one, reference_one) <= FP32_TOLERANCE


def test_token_replacement_is_what_makes_the_match():
    """The same weights run as plain text-to-video differ from diffusers' token-replace model by far
    more than the tolerance, in every frame (attention spreads the first frame's change)."""
    config = VARIANTS["token_replace"]
    ours, theirs = pair(config)
    x = make_inputs(config)
    _, reference = forwards(ours, theirs, x, None)
    plain = HunyuanVideoTransformer(DiTConfig.tiny(guidance_embed=False), dtype=torch.float32)
    plain.load_state_dict(ours.state_dict())
    unreplaced = plain(**x).float()
    assert relative_error(unreplaced[:, :, :1], reference[:, :, :1]) > 100 * FP32_TOLERANCE
    assert relative_error(unreplaced[:, :, 1:], reference[:, :, 1:]) > 10 * FP32_TOLERANCE


def test_the_variant_is_read_from_the_weights():
    for name, config in VARIANTS.items():
        state = HunyuanVideoTransformer(config, device="meta").state_dict()
        inferred = DiTConfig.from_state_dict(state)
        assert inferred == config and inferred.image_condition == name and inferred.is_image_to_video
    assert (
        DiTConfig.from_state_dict(HunyuanVideoTransformer(DiTConfig.tiny(), device="meta").state_dict()).image_condition
        == "none"
    )
    assert infer_image_condition(33, 16, False) == "latent_concat"
    assert infer_image_condition(32, 16, True) == "skyreels_concat"
    assert infer_image_condition(16, 16, False) == "token_replace"
    assert infer_image_condition(16, 16, True) == "none"  # T2V, and SkyReels' T2V
    named = {
        DiTConfig(in_channels=33, guidance_embed=False, image_condition="latent_concat").name,
        DiTConfig(guidance_embed=False, image_condition="token_replace").name,
        DiTConfig(in_channels=32, image_condition="skyreels_concat").name,
    }
    assert named == {"HunyuanVideo-I2V (latent concat)", "HunyuanVideo-I2V (token replace)", "SkyReels-V1 I2V"}
    with pytest.raises(ValueError, match="takes 33 input channels"):
        DiTConfig.tiny(in_channels=16, image_condition="latent_concat")
    with pytest.raises(ValueError, match="image_condition must be one of"):
        DiTConfig.tiny(image_condition="replace")


# --- loading the released formats ------------------------------------------------------------------------

FORMATS = {
    # Comfy-Org's repackaged I2V files carry ComfyUI's prefix; kijai's are bare, bf16 or FP8 casts.
    "comfy_org": lambda state, d: tiny.write_safetensors(
        state, d / "hunyuan_video_image_to_video_720p_bf16.safetensors", "model.diffusion_model."
    ),
    "tencent_pt": lambda state, d: tiny.write_tencent_pt(state, d / "mp_rank_00_model_states.pt"),
    "kijai_fp8": lambda state, d: tiny.write_fp8_cast(state, d / "hunyuan_video_I2V_fp8_e4m3fn.safetensors"),
    "diffusers": lambda state, d: tiny.write_diffusers(state, d / "transformer"),
    "gguf": lambda state, d: tiny.write_gguf(state, d / "hunyuan-video-i2v-720p-Q8_0.gguf", "Q8_0"),
}
LOAD_BOUNDS = {"comfy_org": 1e-6, "tencent_pt": 1e-6, "kijai_fp8": 0.06, "diffusers": 1e-6, "gguf": 0.03}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_of_every_variant_loads_with_its_variant_logged(tmp_path, caplog, variant, fmt):
    config = VARIANTS[variant]
    reference = tiny.random_transformer(config, seed=4)
    path = FORMATS[fmt](tiny.release_state_dict(reference), tmp_path)
    with caplog.at_level(logging.INFO, logger="HunyuanVideo"):
        model = load_transformer(path, base_dtype=torch.float32)
    assert model.config == config
    assert "image-to-video" in caplog.text and f"{config.in_channels} input channels" in caplog.text
    x = {k: v[:1] for k, v in make_inputs(config).items()}
    guidance = 6.0 if config.guidance_embed else None
    expected = reference(**x, guidance=guidance)
    error = ((model(**x, guidance=guidance) - expected).norm() / expected.norm()).item()
    assert error <= LOAD_BOUNDS[fmt]


def test_a_dit_whose_channels_fit_no_variant_is_named(tmp_path):
    state = tiny.release_state_dict(tiny.random_transformer(DiTConfig.tiny(), seed=4))
    state["img_in.proj.weight"] = torch.zeros(256, 20, 1, 2, 2)
    with pytest.raises(CheckpointError, match="not 20 .*SkyReels-V1 I2V"):
        open_transformer(tiny.write_safetensors(state, tmp_path / "odd.safetensors"))
