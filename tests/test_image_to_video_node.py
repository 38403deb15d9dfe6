"""HunyuanVideo Image To Video: image + VAE + latent size -> a LATENT the sampler takes for I2V models."""

from __future__ import annotations

import pytest
import torch
from test_dit_i2v import VARIANTS
from test_sampler_node import run
from test_sampling import make_handle, random_prompts
from test_vae import randomized_tiny_vae

from hunyuanvideo_pack.hunyuan_model.conditioning import TextEmbeds
from hunyuanvideo_pack.hunyuan_model.dit import HunyuanVideoTransformer, init_random_weights
from hunyuanvideo_pack.hunyuan_model.image_condition import ImageCondition, fit_image
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample
from hunyuanvideo_pack.hunyuan_model.vae.codec import encode
from hunyuanvideo_pack.nodes.image_to_video import IMAGE_LATENT_KEY, STABILITY_KEY, HunyuanVideoImageToVideo
from hunyuanvideo_pack.nodes.latent import HunyuanVideoEmptyLatent


@pytest.fixture(scope="module")
def vae():
    return randomized_tiny_vae(seed=5)


def widgets(**overrides) -> dict:
    required = HunyuanVideoImageToVideo.INPUT_TYPES()["required"]
    return {name: spec[1]["default"] for name, spec in required.items() if "default" in spec[1]} | overrides


def condition(vae, image, latent, **overrides) -> dict:
    (out,) = HunyuanVideoImageToVideo().condition(vae=vae, image=image, latent=latent, **widgets(**overrides))
    return out


def test_inputs_have_tooltips_and_defaults():
    required = HunyuanVideoImageToVideo.INPUT_TYPES()["required"]
    assert list(required) == ["vae", "image", "latent", "size", "resize", "stability"]
    assert all(spec[1].get("tooltip") for spec in required.values())
    assert widgets() == {"size": "from latent", "resize": "crop", "stability": True}


def test_the_node_encodes_the_fitted_image_and_the_sampler_runs_image_to_video(vae):
    (latent,) = HunyuanVideoEmptyLatent().generate(width=64, height=48, frames=9, batch=2)
    image = torch.rand(1, 96, 100, 4)  # RGBA, another size: alpha dropped, covered and centre-cropped
    out = condition(vae, image, latent, stability=False)
    expected = encode(vae, fit_image(image, 64, 48).unsqueeze(1))
    assert torch.equal(out[IMAGE_LATENT_KEY], expected) and out[STABILITY_KEY] is False
    assert torch.equal(out["samples"], latent["samples"])

    model = init_random_weights(HunyuanVideoTransformer(VARIANTS["token_replace"], dtype=torch.float32), seed=7)
    embeds = TextEmbeds(random_prompts(model.config, (7,), seed=8))
    result = run(make_handle(model), embeds, out, seed=3)
    direct = sample(
        make_handle(model),
        embeds,
        latent["samples"],
        3,
        SamplerSettings(steps=3),
        image=ImageCondition(expected, stability=False),
    )
    assert torch.equal(result["samples"], direct)
    assert IMAGE_LATENT_KEY not in result and STABILITY_KEY not in result
    # ComfyUI's EmptyHunyuanLatentVideo LATENT is the same dict: {"samples": zeros}.
    comfy = condition(vae, image[:, :48, :64], {"samples": torch.zeros(1, 16, 3, 6, 8)})
    assert comfy[IMAGE_LATENT_KEY].shape == (1, 16, 1, 6, 8)
    # A text-to-video model given this latent says what to do.
    t2v = init_random_weights(HunyuanVideoTransformer(VARIANTS["token_replace"].__class__.tiny(), dtype=torch.float32))
    with pytest.raises(ValueError, match="this DiT is text-to-video"):
        run(make_handle(t2v), embeds, out, seed=3)
    with pytest.raises(ValueError, match="needs the image"):
        run(make_handle(model), embeds, latent, seed=3)


def test_bucket_sizes_and_wrong_batches(vae):
    (latent,) = HunyuanVideoEmptyLatent().generate(width=64, height=48, frames=9, batch=2)
    out = condition(vae, torch.rand(1, 120, 160, 3), latent, size="360p bucket")
    assert out["samples"].shape == (2, 16, 3, 416 // 8, 544 // 8)  # Tencent's 360p bucket for 4:3
    assert out[IMAGE_LATENT_KEY].shape == (1, 16, 1, 52, 68)
    with pytest.raises(ValueError, match="3 images for 2 videos"):
        condition(vae, torch.rand(3, 48, 64, 3), latent)
