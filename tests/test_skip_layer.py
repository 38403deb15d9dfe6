"""Skip-layer guidance: scale 0 is a no-op, and the guided velocity is v + scale (v_pos - v_skipped)."""

from __future__ import annotations

import pytest
import torch
from tiny_sampling import embeds, handle, tiny_model

from hunyuanvideo_pack.hunyuan_model.extras import SkipLayerGuidance, StepRange, VideoOptions, applied
from hunyuanvideo_pack.hunyuan_model.sampling import GuidedVelocity, SamplerSettings, sample
from hunyuanvideo_pack.hunyuan_model.sampling.schedule import timesteps

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_scale_zero_is_bit_identical_to_no_guidance(model, cfg):
    latent = torch.zeros(1, 16, 3, 4, 4)
    settings = SamplerSettings(steps=2)
    plain = sample(handle(model), embeds(model.config, cfg), latent, 0, settings)
    off = VideoOptions(skip_layers=SkipLayerGuidance((0,), (1,), scale=0.0, steps=StepRange(0, 1)))
    assert torch.equal(sample(handle(model, off), embeds(model.config, cfg), latent, 0, settings), plain)


class Skipped(torch.nn.Module):
    """A block that returns its input (what skipping means)."""

    def forward(self, *args):
        return args[0] if len(args) == 4 else (args[0], args[1])


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_guidance_adds_scale_times_positive_minus_skipped(model, cfg):
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(1, 16, 3, 4, 4, generator=g), torch.tensor([700.0])
    prompts = embeds(model.config, cfg)
    sigmas = torch.tensor([1.0, 0.7, 0.0])
    slg = SkipLayerGuidance(double_blocks=(1,), single_blocks=(0,), scale=2.5, steps=StepRange(0, 1))
    base = GuidedVelocity(model, prompts, 1, CPU, guidance=6.0)
    with applied(VideoOptions(skip_layers=slg), model, base, timesteps(sigmas)) as velocity:
        got = velocity(x, t)
    guided, positive = base(x, t), base.prompt_velocity(x, t, base.positive)
    kept = model.double_blocks[1], model.single_blocks[0]
    model.double_blocks[1], model.single_blocks[0] = Skipped(), Skipped()
    try:
        skipped = base.prompt_velocity(x, t, base.positive)
    finally:
        model.double_blocks[1], model.single_blocks[0] = kept
    torch.testing.assert_close(got, guided + 2.5 * (positive - skipped), rtol=0, atol=1e-5)
    assert (positive - skipped).abs().max() > 1e-3  # skipping really changed the prediction
    assert model.runner.__name__ == "run_module"  # the runner is restored after the run


def test_steps_outside_the_range_run_once_and_blocks_are_checked(model):
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    slg = SkipLayerGuidance(single_blocks=(1,), scale=1.0, steps=StepRange(0.5, 1.0))
    base = GuidedVelocity(model, embeds(model.config), 1, CPU, guidance=6.0)
    x = torch.randn(1, 16, 2, 2, 2)
    with applied(VideoOptions(skip_layers=slg), model, base, timesteps(sigmas)) as velocity:
        assert torch.equal(velocity(x, torch.tensor([1000.0])), base(x, torch.tensor([1000.0])))  # step 0 of 2
        assert not torch.equal(velocity(x, torch.tensor([500.0])), base(x, torch.tensor([500.0])))  # step 1
    with pytest.raises(ValueError, match=r"single block\(s\) \[2\] do not exist.*2 single blocks"):
        with applied(VideoOptions(skip_layers=SkipLayerGuidance(single_blocks=(2,))), model, base, sigmas):
            pass
