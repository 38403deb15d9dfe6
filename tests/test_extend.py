"""Extending a video: N new frames come out, the conditioning frames are kept, the seam is blended."""

from __future__ import annotations

import pytest
import torch
from test_vae import randomized_tiny_vae
from tiny_sampling import embeds, handle, tiny_model

from hunyuanvideo_pack.hunyuan_model.extras import extend_latent, extension_input, join_extension
from hunyuanvideo_pack.hunyuan_model.latent import VAE_SCALING_FACTOR
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample
from hunyuanvideo_pack.hunyuan_model.vae.codec import decode, encode
from hunyuanvideo_pack.nodes.long_video import HunyuanVideoExtend

SETTINGS = SamplerSettings(steps=3)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_held_frames_end_as_they_came_in_and_steer_the_new_ones(model):
    g = torch.Generator().manual_seed(0)
    video = torch.randn(1, 16, 4, 4, 4, generator=g)
    start = extension_input(video, context=2, new=3)
    assert start.shape == (1, 16, 5, 4, 4) and torch.equal(start[:, :, :2], video[:, :, 2:])
    held = sample(handle(model), embeds(model.config), start, 0, SETTINGS, hold_frames=2)
    # the held frames follow their noising path exactly: only float32 rounding of the Euler steps remains
    torch.testing.assert_close(held[:, :, :2], start[:, :, :2], rtol=0, atol=1e-5 / VAE_SCALING_FACTOR)
    free = sample(handle(model), embeds(model.config), start, 0, SETTINGS)
    assert not torch.allclose(held[:, :, 2:], free[:, :, 2:], atol=1e-3)  # the new frames saw them


def test_extend_adds_exactly_the_new_frames_and_blends_only_the_seam(model):
    video = torch.randn(1, 16, 5, 4, 4, generator=torch.Generator().manual_seed(1))
    out = extend_latent(
        handle(model), embeds(model.config), video, new=3, context=3, blend=2, seed=0, settings=SETTINGS
    )
    assert out.shape == (1, 16, 8, 4, 4)
    assert torch.equal(out[:, :, :3], video[:, :, :3])  # before the seam: the input, bit for bit
    # the seam frames lie between the input and the model's version, closer to the input first
    sampled = sample(handle(model), embeds(model.config), extension_input(video, 3, 3), 0, SETTINGS, hold_frames=3)
    expected = join_extension(video, sampled, context=3, blend=2)
    assert torch.equal(out, expected)
    w = torch.tensor([1 / 3, 2 / 3]).reshape(1, 1, 2, 1, 1)
    torch.testing.assert_close(out[:, :, 3:5], (1 - w) * video[:, :, 3:5] + w * sampled[:, :, 1:3])
    assert torch.equal(out[:, :, 5:], sampled[:, :, 3:])
    with pytest.raises(ValueError, match="condition on 1 to 5 of them, got 6"):
        extend_latent(handle(model), embeds(model.config), video, new=1, context=6, blend=0, seed=0)
    with pytest.raises(ValueError, match="denoise 1.0"):
        extend_latent(handle(model), embeds(model.config), video, 1, 1, 0, 0, SamplerSettings(denoise=0.5))


def test_extend_node_keeps_the_first_frames_within_the_codecs_error(model):
    vae = randomized_tiny_vae()
    g = torch.Generator().manual_seed(2)
    pixels = torch.rand(1, 9, 32, 32, 3, generator=g) * 0.5 + 0.25  # 9 frames = 3 latent frames
    latent = encode(vae, pixels)
    codec_error = (decode(vae, latent) - pixels).abs().amax(dim=(0, 2, 3, 4))  # per frame

    (out,) = HunyuanVideoExtend().extend(
        handle(model), embeds(model.config), {"samples": latent}, 0, 8, 8, 0, 2, 7.0, 6.0, False
    )
    assert out["samples"].shape == (1, 16, 5, 4, 4)  # 2 latent frames = 8 new video frames
    video = decode(vae, out["samples"])
    assert video.shape[1] == 9 + 8
    # with no blend the conditioning frames are the input's latents: decoded, they are the input up to the codec
    error = (video[:, :9] - pixels).abs().amax(dim=(0, 2, 3, 4))
    assert (error <= codec_error + 1e-5).all()
    with pytest.raises(ValueError, match="multiple of 4.*got 6"):
        HunyuanVideoExtend().extend(
            handle(model), embeds(model.config), {"samples": latent}, 0, 6, 8, 0, 2, 7.0, 6.0, False
        )
