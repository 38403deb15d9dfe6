"""Image-to-video sampling: image -> VAE latent -> condition -> denoising steps, against diffusers'
HunyuanVideoImageToVideoPipeline (both releases) and HunyuanSkyreelsImageToVideoPipeline built from
the same tiny transformer and VAE; and every wrong input refused with what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_dit_i2v import VARIANTS
from test_sampling import (
    PARITY_GUIDANCE,
    PARITY_TOLERANCE,
    diffusers_model,
    make_handle,
    random_prompts,
    relative_error,
)
from test_vae import randomized_tiny_vae

from hunyuanvideo_pack.hunyuan_model.conditioning import TextEmbeds
from hunyuanvideo_pack.hunyuan_model.dit import HunyuanVideoTransformer, init_random_weights, tencent_to_diffusers
from hunyuanvideo_pack.hunyuan_model.image_condition import ImageCondition, bucket_size, fit_image
from hunyuanvideo_pack.hunyuan_model.latent import VAE_SCALING_FACTOR
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample, seeded_noise
from hunyuanvideo_pack.hunyuan_model.vae.codec import encode

SIZE = (64, 48)  # width, height: a 6x8 latent, 9 frames = 3 latent frames
STEPS = 3


@pytest.fixture(scope="module")
def vae():
    return randomized_tiny_vae(seed=5)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """An RGB uint8 picture at the video size: smooth gradients and a block, so the VAE sees structure."""
    w, h = SIZE
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, ((x // 16 + y // 16) % 2) * 200], axis=-1)
    return rgb.astype(np.uint8)


def our_condition(vae, picture: np.ndarray, stability: bool = True) -> ImageCondition:
    image = torch.from_numpy(picture).float().div(255).unsqueeze(0)  # ComfyUI IMAGE [1, H, W, 3]
    pixels = fit_image(image, *SIZE)
    return ImageCondition(encode(vae, pixels.unsqueeze(1)), stability=stability)


def diffusers_run(variant: str, model: HunyuanVideoTransformer, vae, picture, embeds, noise, **kwargs):
    """The pipeline's final latents (model space, every frame) taken from its step callback."""
    import diffusers
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler
    from PIL import Image

    transformer = diffusers_model(model.config)
    transformer.load_state_dict(tencent_to_diffusers(model.state_dict()), strict=True)
    theirs_vae = AutoencoderKLHunyuanVideo(
        block_out_channels=vae.config.block_out_channels,
        layers_per_block=vae.config.layers_per_block,
        norm_num_groups=vae.config.norm_groups,
    ).eval()
    theirs_vae.load_state_dict(vae.state_dict(), strict=True)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    if variant == "skyreels_concat":
        pipe = diffusers.HunyuanSkyreelsImageToVideoPipeline(None, None, transformer, theirs_vae, scheduler, None, None)
    else:
        pipe = diffusers.HunyuanVideoImageToVideoPipeline(
            None, None, transformer, theirs_vae, scheduler, None, None, None
        )
    pipe.set_progress_bar_config(disable=True)
    seen = {}

    def keep(pipe, i, t, tensors):
        seen["latents"] = tensors["latents"]
        return {}

    w, h = SIZE
    pipe(
        image=Image.fromarray(picture),
        prompt_embeds=embeds.positive.text_states,
        pooled_prompt_embeds=embeds.positive.pooled,
        prompt_attention_mask=embeds.positive.text_mask,
        latents=noise,
        height=h,
        width=w,
        num_frames=9,
        num_inference_steps=STEPS,
        output_type="latent",
        callback_on_step_end=keep,
        **kwargs,
    )
    return seen["latents"].float()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_image_to_video_matches_diffusers_pipeline(variant, vae, picture, monkeypatch):
    config = VARIANTS[variant]
    model = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=7)
    embeds = TextEmbeds(random_prompts(config, (7,), seed=8))
    latent = torch.zeros(1, 16, 3, SIZE[1] // 8, SIZE[0] // 8)
    guidance = PARITY_GUIDANCE if config.guidance_embed else 6.0
    settings = SamplerSettings(steps=STEPS, shift=7.0, guidance=guidance)
    condition = our_condition(vae, picture)
    ours = sample(make_handle(model), embeds, latent, seed=9, settings=settings, image=condition)

    noise = seeded_noise(latent.shape, seed=9)
    if variant == "skyreels_concat":
        # Skywork (and diffusers' SkyReels pipeline) take a posterior sample; we take the mean as Tencent does.
        from diffusers.models.autoencoders import vae as diffusers_vae

        monkeypatch.setattr(
            diffusers_vae.DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mean
        )
        theirs = diffusers_run(variant, model, vae, picture, embeds, noise, guidance_scale=guidance, true_cfg_scale=1.0)
    else:
        theirs = diffusers_run(variant, model, vae, picture, embeds, noise)
    assert relative_error(ours * VAE_SCALING_FACTOR, theirs) < PARITY_TOLERANCE
    image_latent = condition.latent * VAE_SCALING_FACTOR
    if variant == "token_replace":  # frame 0 is the image latent, exactly
        assert torch.equal(ours[:, :, :1] * VAE_SCALING_FACTOR, image_latent)
    # The image matters: another image moves every frame.
    other = our_condition(vae, 255 - picture)
    moved = sample(make_handle(model), embeds, latent, seed=9, settings=settings, image=other)
    assert relative_error(moved[:, :, 1:], ours[:, :, 1:]) > 1e-3


def test_stability_off_starts_from_pure_noise(vae, picture):
    config = VARIANTS["latent_concat"]
    model = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=7)
    embeds = TextEmbeds(random_prompts(config, (7,), seed=8))
    latent = torch.zeros(1, 16, 3, SIZE[1] // 8, SIZE[0] // 8)
    starts = {}
    for stability in (True, False):
        seen: list[torch.Tensor] = []
        sample(
            make_handle(model),
            embeds,
            latent,
            seed=9,
            settings=SamplerSettings(steps=1, shift=7.0),
            image=our_condition(vae, picture, stability),
            on_step=lambda done, total, x0, seen=seen: seen.append(x0),
        )
        starts[stability] = seen[0]
    assert 0 < relative_error(starts[True], starts[False]) < 0.05


def test_wrong_inputs_are_refused_with_what_to_do(vae, picture):
    t2v = init_random_weights(HunyuanVideoTransformer(VARIANTS["token_replace"].__class__.tiny(), dtype=torch.float32))
    i2v = init_random_weights(HunyuanVideoTransformer(VARIANTS["token_replace"], dtype=torch.float32))
    embeds = TextEmbeds(random_prompts(t2v.config, (7,), seed=8))
    latent = torch.zeros(1, 16, 3, SIZE[1] // 8, SIZE[0] // 8)
    condition = our_condition(vae, picture)
    with pytest.raises(ValueError, match="this DiT is text-to-video .*Load an image-to-video transformer"):
        sample(make_handle(t2v), embeds, latent, seed=0, image=condition)
    with pytest.raises(ValueError, match="needs the image it starts from.*HunyuanVideo Image To Video"):
        sample(make_handle(i2v), embeds, latent, seed=0)
    small = ImageCondition(condition.latent[..., :4, :4])
    with pytest.raises(ValueError, match=r"must be \[1 or 1, 16, 1, 6, 8\].*64x48"):
        sample(make_handle(i2v), embeds, latent, seed=0, image=small)
    with pytest.raises(ValueError, match="one latent frame"):
        ImageCondition(torch.zeros(1, 16, 2, 6, 8))


def test_images_are_converted_as_tencent_converts_them():
    rgba = torch.rand(1, 48, 64, 4)
    assert torch.equal(fit_image(rgba, 64, 48), rgba[..., :3])  # alpha dropped, as PIL's convert('RGB')
    grey = torch.rand(1, 48, 64, 1)
    assert torch.equal(fit_image(grey, 64, 48), grey.expand(-1, -1, -1, 3))
    wide = torch.rand(2, 60, 160, 3)  # 8:3 into 4:3: covered at 48x128, the centre 64 columns kept
    cropped = fit_image(wide, 64, 48)
    assert cropped.shape == (2, 48, 64, 3)
    stretched = fit_image(wide, 64, 48, "stretch")
    assert stretched.shape == (2, 48, 64, 3) and relative_error(stretched, cropped) > 0.1
    with pytest.raises(ValueError, match="1 \\(grey\\), 3 \\(RGB\\) or 4"):
        fit_image(torch.rand(1, 48, 64, 5), 64, 48)
    # Tencent's buckets, values from running hyvideo/utils/data_utils.py's own functions.
    assert bucket_size(1080, 1920) == (704, 1248)
    assert bucket_size(1000, 1000) == (960, 960)
    assert bucket_size(1920, 1080, "540p") == (928, 544)
    assert bucket_size(480, 640, "360p") == (416, 544)


def test_step_cache_runs_on_token_replace_models(vae, picture):
    """TeaCache's indicator reads block 0's modulation of ``vec``; under token replacement the blocks get a
    TokenReplaceVec, whose plain ``vec`` it uses. Threshold 0 stays bit-identical; a high one reuses steps."""
    import dataclasses

    from hunyuanvideo_pack.hunyuan_model.step_cache import StepCache

    config = VARIANTS["token_replace"]
    model = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=7)
    embeds = TextEmbeds(random_prompts(config, (7,), seed=8))
    latent = torch.zeros(1, 16, 3, SIZE[1] // 8, SIZE[0] // 8)
    condition = our_condition(vae, picture)
    settings = SamplerSettings(steps=6, shift=7.0)
    plain = sample(make_handle(model), embeds, latent, seed=9, settings=settings, image=condition)
    results = {}
    for threshold in (0.0, 10.0):
        cache = StepCache("teacache", threshold=threshold)
        handle = dataclasses.replace(make_handle(model), step_cache=cache)
        results[threshold] = sample(handle, embeds, latent, seed=9, settings=settings, image=condition)
        if threshold:
            assert cache.last_run.reused > 0
    assert torch.equal(results[0.0], plain)
    assert torch.isfinite(results[10.0]).all()
