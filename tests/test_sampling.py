"""Flow-match sampling: the schedule against Tencent's formula and diffusers' scheduler, the seed rule,
and whole runs against diffusers' HunyuanVideoPipeline built from the same tiny transformer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from test_dit import diffusers_model

from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds
from hunyuanvideo_pack.hunyuan_model.dit import (
    DiTConfig,
    HunyuanVideoTransformer,
    init_random_weights,
    tencent_to_diffusers,
)
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle, WholeModel
from hunyuanvideo_pack.hunyuan_model.latent import VAE_SCALING_FACTOR
from hunyuanvideo_pack.hunyuan_model.sampling import (
    SamplerSettings,
    add_noise,
    check_sigmas,
    euler_sample,
    flow_sigmas,
    sample,
    seeded_noise,
)

# float32 end to end against diffusers, relative to the largest latent value: measured 2.6e-7 to 1.3e-6
# (the schedules differ by an ulp: numpy's linspace against torch's; the DiTs by float32 rounding).
PARITY_TOLERANCE = 1e-5
# Guidance whose bf16 rounding times 1000 is exact in float32: diffusers' float32 pipeline embeds
# g * 1000 in float32 while the DiT (like the bf16 pipelines) embeds bf16(g) * 1000, so 6.0 would give
# 6000 there and 6016 here. 4.0 gives 4000 in both.
PARITY_GUIDANCE = 4.0
LATENT_SHAPE = (1, 16, 3, 8, 8)  # 48 video tokens


def tencent_sigmas(steps: int, shift: float) -> torch.Tensor:
    """Tencent's FlowMatchDiscreteScheduler.set_timesteps with reverse=True, transcribed (spec 6.1)."""
    sigmas = torch.linspace(1, 0, steps + 1)
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def diffusers_scheduler(steps: int, shift: float):
    """diffusers' scheduler set up as HunyuanVideoPipeline sets it up (spec 6.3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])
    scheduler.set_begin_index(0)
    return scheduler


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@dataclass
class SpyPlacement(WholeModel):
    """WholeModel that records what the sampler asked of it."""

    events: list = field(default_factory=list)

    def enter(self, model, compute_device, offload_device, latent_shape) -> None:
        self.events.append(("enter", tuple(latent_shape)))
        super().enter(model, compute_device, offload_device, latent_shape)

    def exit(self, model, offload: bool) -> None:
        self.events.append(("exit", offload))
        super().exit(model, offload)


def tiny_model(seed: int = 1, **overrides) -> HunyuanVideoTransformer:
    config = DiTConfig.tiny(**overrides)
    return init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=seed)


def make_handle(model: HunyuanVideoTransformer) -> TransformerHandle:
    cpu = torch.device("cpu")
    return TransformerHandle(model, cpu, cpu, placement=SpyPlacement(), description="tiny test DiT")


def random_prompts(config: DiTConfig, lengths: tuple[int, ...], seed: int, padded_to: int = 12) -> PromptEmbeds:
    """One prompt per entry of ``lengths`` real tokens, padded to ``padded_to``."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(lengths), padded_to, dtype=torch.int64)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
    return PromptEmbeds(
        text_states=torch.randn(len(lengths), padded_to, config.text_dim, generator=g),
        text_mask=mask,
        pooled=torch.randn(len(lengths), config.pooled_dim, generator=g),
    )


@pytest.fixture(scope="module")
def distilled() -> HunyuanVideoTransformer:
    return tiny_model()


@pytest.fixture(scope="module")
def prompt(distilled) -> PromptEmbeds:
    return random_prompts(distilled.config, (7,), seed=3)


def diffusers_pipeline(model: HunyuanVideoTransformer, shift: float):
    """diffusers' pipeline around our weights; no text encoders or VAE: embeds go in, latents come out."""
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    transformer = diffusers_model(model.config)
    transformer.load_state_dict(tencent_to_diffusers(model.state_dict()), strict=True)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    pipe = HunyuanVideoPipeline(None, None, transformer, None, scheduler, None, None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_latents(pipe, embeds: TextEmbeds, start: torch.Tensor, **kwargs) -> torch.Tensor:
    """The pipeline's final latents (model space) from ``start``."""
    negative = {}
    if embeds.uses_cfg:
        negative = dict(
            negative_prompt_embeds=embeds.negative.text_states,
            negative_pooled_prompt_embeds=embeds.negative.pooled,
            negative_prompt_attention_mask=embeds.negative.text_mask,
            true_cfg_scale=embeds.cfg_scale,
        )
    _, _, t, h, w = start.shape
    return pipe(
        prompt_embeds=embeds.positive.text_states,
        pooled_prompt_embeds=embeds.positive.pooled,
        prompt_attention_mask=embeds.positive.text_mask,
        latents=start,
        height=h * 8,
        width=w * 8,
        num_frames=(t - 1) * 4 + 1,
        output_type="latent",
        **negative,
        **kwargs,
    ).frames


# --- the schedule -----------------------------------------------------------------------------------


def test_schedule_is_tencents_formula_bit_for_bit_with_the_spec_values():
    for steps in (1, 4, 30, 50):
        for shift in (1.0, 7.0, 17.0):
            assert torch.equal(flow_sigmas(steps, shift), tencent_sigmas(steps, shift))
    sigmas = flow_sigmas(50, 7.0)
    assert sigmas.dtype == torch.float32 and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    expected_t = torch.tensor([1000.0, 997.093, 994.083, 990.964, 987.730])
    torch.testing.assert_close(sigmas[:5] * 1000, expected_t, atol=1e-3, rtol=0)
    torch.testing.assert_close(sigmas[-3:], torch.tensor([0.2258, 0.125, 0.0]), atol=1e-4, rtol=0)


def test_schedule_matches_diffusers_flow_match_scheduler():
    worst = 0.0
    for steps in (1, 4, 30, 50):
        for shift in (1.0, 7.0, 17.0):
            theirs = diffusers_scheduler(steps, shift)
            ours = flow_sigmas(steps, shift)
            assert ours.shape == theirs.sigmas.shape
            worst = max(worst, (ours - theirs.sigmas).abs().max().item())
            torch.testing.assert_close(ours[:-1] * 1000, theirs.timesteps, atol=2e-4, rtol=0)
    assert worst <= 1.2e-7  # one float32 ulp near 1: numpy's linspace against torch's


def test_euler_steps_follow_tencents_update_and_diffusers_scheduler_step():
    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * (t / 1000) + torch.cos(3 * x)  # nonlinear: any misplaced step shows

    x0 = torch.randn(2, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    steps, shift = 8, 7.0
    ours = euler_sample(velocity, x0, flow_sigmas(steps, shift))

    sigmas, x = tencent_sigmas(steps, shift), x0.clone()
    for i in range(steps):
        dt = sigmas[i + 1] - sigmas[i]
        x = x + velocity(x, (sigmas[:-1] * 1000)[i]).float() * dt
    assert torch.equal(ours, x)

    scheduler, x = diffusers_scheduler(steps, shift), x0.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(velocity(x, t), t, x, return_dict=False)[0]
    torch.testing.assert_close(ours, x, atol=1e-6, rtol=1e-6)


def test_denoise_runs_the_tail_of_a_longer_schedule():
    assert torch.equal(flow_sigmas(10, 7.0, denoise=0.5), flow_sigmas(20, 7.0)[-11:])
    assert torch.equal(flow_sigmas(30, 7.0, denoise=0.6), flow_sigmas(50, 7.0)[-31:])
    assert torch.equal(flow_sigmas(3, 7.0, denoise=0.4), flow_sigmas(7, 7.0)[-4:])  # int(3 / 0.4) = 7
    assert flow_sigmas(10, 7.0, denoise=0.5)[0] < 1.0


def test_bad_schedule_settings_are_refused_with_the_value():
    with pytest.raises(ValueError, match="steps must be .* at least 1, got 0"):
        flow_sigmas(0)
    with pytest.raises(ValueError, match="shift must be above 0.*got -1"):
        flow_sigmas(10, shift=-1.0)
    with pytest.raises(ValueError, match="denoise must be above 0 and at most 1.*got 1.5"):
        flow_sigmas(10, denoise=1.5)
    with pytest.raises(ValueError, match="embedded guidance"):
        SamplerSettings(guidance=-1.0)


def test_custom_sigmas_are_checked_for_a_flow_model():
    accepted = check_sigmas(torch.tensor([1.0000001, 0.5, 0.5, 0.1], dtype=torch.float64))
    assert accepted.dtype == torch.float32 and accepted[0] == 1.0
    karras = torch.tensor([14.6, 5.0, 1.0, 0.03, 0.0])
    with pytest.raises(ValueError, match="from 1 \\(noise\\) to 0.*14.6.*sigma_max"):
        check_sigmas(karras)
    with pytest.raises(ValueError, match="never increase"):
        check_sigmas(torch.tensor([0.2, 0.5, 0.0]))
    with pytest.raises(ValueError, match="at least 2"):
        check_sigmas(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="nothing to denoise"):
        check_sigmas(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="NaN"):
        SamplerSettings(sigmas=torch.tensor([1.0, float("nan"), 0.0]))
    assert torch.equal(SamplerSettings(steps=3, sigmas=torch.tensor([0.8, 0.3, 0.0])).schedule()[0], torch.tensor(0.8))


# --- noise ------------------------------------------------------------------------------------------


def test_each_video_of_a_batch_has_the_noise_of_its_own_seed():
    shape = (3, 16, 2, 4, 6)
    batch = seeded_noise(shape, seed=100)
    assert batch.dtype == torch.float32 and batch.device.type == "cpu"
    for i in range(3):
        assert torch.equal(batch[i : i + 1], seeded_noise((1, *shape[1:]), seed=100 + i))
    assert torch.equal(seeded_noise((1, *shape[1:]), seed=100, batch_index=[2]), batch[2:])
    assert torch.equal(seeded_noise((1, 4), seed=2**64 - 1, batch_index=[1]), seeded_noise((1, 4), seed=0))
    assert not torch.equal(seeded_noise(shape, seed=101)[0], batch[0])
    with pytest.raises(ValueError, match="batch_index has 1 entries for a batch of 3"):
        seeded_noise(shape, seed=0, batch_index=[0])


def test_noise_is_added_as_the_flow_model_sees_it():
    clean, noise = torch.full((1, 4), 2.0), torch.full((1, 4), -1.0)
    assert torch.equal(add_noise(clean, noise, torch.tensor(1.0)), noise)
    assert torch.equal(add_noise(clean, noise, torch.tensor(0.25)), torch.full((1, 4), 1.25))


# --- whole runs against diffusers' pipeline ---------------------------------------------------------


def test_text_to_video_matches_diffusers_pipeline_for_two_prompts(distilled):
    prompts = random_prompts(distilled.config, (7, 10), seed=4)
    embeds = TextEmbeds(prompts)
    latent = torch.zeros(2, *LATENT_SHAPE[1:])
    settings = SamplerSettings(steps=6, shift=7.0, guidance=PARITY_GUIDANCE)
    ours = sample(make_handle(distilled), embeds, latent, seed=5, settings=settings)

    noise = seeded_noise(latent.shape, seed=5)
    pipe = diffusers_pipeline(distilled, shift=7.0)
    theirs = diffusers_latents(pipe, embeds, noise, num_inference_steps=6, guidance_scale=PARITY_GUIDANCE)
    assert ours.dtype == torch.float32
    assert relative_error(ours * VAE_SCALING_FACTOR, theirs) < PARITY_TOLERANCE
    assert relative_error(ours * VAE_SCALING_FACTOR, noise) > 0.5  # the model really moved the latents


def test_true_cfg_matches_diffusers_batched_and_one_after_the_other():
    model = tiny_model(seed=2, guidance_embed=False)
    embeds = TextEmbeds(
        random_prompts(model.config, (7,), seed=6),
        negative=random_prompts(model.config, (3,), seed=7, padded_to=5),
        cfg_scale=3.0,
    )
    latent = torch.zeros(LATENT_SHAPE)
    settings = SamplerSettings(steps=4, shift=5.0)
    batched = sample(make_handle(model), embeds, latent, seed=8, settings=settings, batch_cfg=True)
    sequential = sample(make_handle(model), embeds, latent, seed=8, settings=settings, batch_cfg=False)

    pipe = diffusers_pipeline(model, shift=5.0)
    theirs = diffusers_latents(pipe, embeds, seeded_noise(latent.shape, seed=8), num_inference_steps=4)
    assert relative_error(batched * VAE_SCALING_FACTOR, theirs) < PARITY_TOLERANCE
    assert relative_error(sequential * VAE_SCALING_FACTOR, theirs) < PARITY_TOLERANCE
    without_cfg = sample(make_handle(model), TextEmbeds(embeds.positive), latent, seed=8, settings=settings)
    assert relative_error(without_cfg, batched) > 0.05  # the negative prompt matters


def test_video_to_video_starts_from_the_noised_latent_like_diffusers_with_those_sigmas(distilled, prompt):
    latent = torch.randn(LATENT_SHAPE, generator=torch.Generator().manual_seed(9))
    settings = SamplerSettings(steps=4, shift=1.0, guidance=PARITY_GUIDANCE, denoise=0.5)
    ours = sample(make_handle(distilled), TextEmbeds(prompt), latent, seed=10, settings=settings)

    sigmas = settings.schedule()
    start = add_noise(latent * VAE_SCALING_FACTOR, seeded_noise(latent.shape, seed=10), sigmas[0])
    pipe = diffusers_pipeline(distilled, shift=1.0)  # the sigmas are already shifted
    theirs = diffusers_latents(
        pipe, TextEmbeds(prompt), start, sigmas=sigmas[:-1].tolist(), guidance_scale=PARITY_GUIDANCE
    )
    assert relative_error(ours * VAE_SCALING_FACTOR, theirs) < PARITY_TOLERANCE
    noise_only = sample(make_handle(distilled), TextEmbeds(prompt), torch.zeros(LATENT_SHAPE), 10, settings)
    assert relative_error(ours, noise_only) > 0.1  # the input latent survives


# --- the run itself ---------------------------------------------------------------------------------


def test_previews_end_at_the_result_and_the_model_is_placed_through_the_handle(distilled, prompt):
    handle = make_handle(distilled)
    seen = []
    out = sample(
        handle,
        TextEmbeds(prompt),
        torch.zeros(LATENT_SHAPE),
        seed=1,
        settings=SamplerSettings(steps=3),
        offload_after=True,
        on_step=lambda done, total, x0: seen.append((done, total, x0.clone())),
    )
    assert [(done, total) for done, total, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    # At the last step sigma_next is 0, so the result is that step's denoised estimate.
    torch.testing.assert_close(seen[-1][2], out * VAE_SCALING_FACTOR, atol=1e-6, rtol=1e-6)
    assert handle.placement.events == [("enter", LATENT_SHAPE), ("exit", True)]


def test_latents_stay_float32_between_steps_of_a_bf16_model(prompt):
    model = init_random_weights(HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.bfloat16), seed=1)
    dtypes = []
    hook = model.register_forward_pre_hook(lambda _, args: dtypes.append(args[0].dtype))
    try:
        out = sample(make_handle(model), TextEmbeds(prompt), torch.zeros(LATENT_SHAPE), 3, SamplerSettings(steps=3))
    finally:
        hook.remove()
    assert dtypes == [torch.float32] * 3 and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_same_seed_is_bit_identical_and_another_seed_differs(distilled, prompt):
    def run(seed: int) -> torch.Tensor:
        return sample(
            make_handle(distilled), TextEmbeds(prompt), torch.zeros(LATENT_SHAPE), seed, SamplerSettings(steps=2)
        )

    first = run(11)
    assert torch.equal(first, run(11))
    assert relative_error(run(12), first) > 0.1


def test_a_shared_prompt_makes_video_i_of_a_batch_the_video_of_seed_plus_i(distilled, prompt):
    settings = SamplerSettings(steps=2)
    batch = sample(make_handle(distilled), TextEmbeds(prompt), torch.zeros(2, *LATENT_SHAPE[1:]), 30, settings)
    for i in range(2):
        alone = sample(make_handle(distilled), TextEmbeds(prompt), torch.zeros(LATENT_SHAPE), 30 + i, settings)
        assert relative_error(batch[i : i + 1], alone) < 1e-6


class Stop(Exception):
    pass


def test_an_exception_from_on_step_stops_the_run_and_the_handle_is_restored(distilled, prompt):
    handle = make_handle(distilled)
    forwards = []

    def cancel_after_two(done, total, x0):
        if done == 2:
            raise Stop

    def counting(name, module, *args):
        forwards.append(name)
        return module(*args)

    with distilled.using_runner(counting), pytest.raises(Stop):
        sample(
            handle, TextEmbeds(prompt), torch.zeros(LATENT_SHAPE), 1, SamplerSettings(steps=5), on_step=cancel_after_two
        )
    assert forwards.count("final_layer") == 2  # stopped within the step
    assert handle.placement.events == [("enter", LATENT_SHAPE), ("exit", False)]
    again = sample(handle, TextEmbeds(prompt), torch.zeros(LATENT_SHAPE), 1, SamplerSettings(steps=2))
    assert torch.equal(
        again,
        sample(make_handle(distilled), TextEmbeds(prompt), torch.zeros(LATENT_SHAPE), 1, SamplerSettings(steps=2)),
    )


# --- bad inputs, refused before any work ------------------------------------------------------------


def test_bad_inputs_are_refused_before_the_model_is_touched(distilled, prompt):
    handle = make_handle(distilled)
    latent = torch.zeros(LATENT_SHAPE)
    wide = TextEmbeds(random_prompts(DiTConfig.tiny(text_dim=96), (4,), seed=1))
    meta = TransformerHandle(HunyuanVideoTransformer(DiTConfig.tiny(), device="meta"), *(torch.device("cpu"),) * 2)
    cases = [
        (dict(embeds=wide), ValueError, "96-wide LLM states .* expects 64"),
        (
            dict(latent=torch.zeros(1, 4, 3, 8, 8)),
            ValueError,
            "\\[batch, 16, frames, height, width\\], got \\(1, 4, 3, 8, 8\\)",
        ),
        (dict(latent=torch.zeros(1, 16, 8, 8)), ValueError, "got \\(1, 16, 8, 8\\)"),
        (dict(latent=torch.zeros(1, 16, 3, 7, 8)), ValueError, "must divide by the DiT's patch"),
        (
            dict(latent=torch.zeros(3, 16, 3, 8, 8), embeds=TextEmbeds(random_prompts(distilled.config, (4, 5), 1))),
            ValueError,
            "2 prompts but the latent holds 3 videos",
        ),
        (dict(handle=None), TypeError, "model must be a loaded HunyuanVideo DiT.*NoneType"),
        (dict(handle=meta), ValueError, "did not finish loading: .* weights hold no data"),
        (dict(embeds="a cat"), TypeError, "embeds must be TextEmbeds"),
    ]
    for overrides, error, message in cases:
        args = dict(handle=handle, embeds=TextEmbeds(prompt), latent=latent) | overrides
        with pytest.raises(error, match=message):
            sample(args["handle"], args["embeds"], args["latent"], 0, SamplerSettings(steps=2))
    with pytest.raises(ValueError, match="steps must be .* at least 1"):
        sample(handle, TextEmbeds(prompt), latent, 0, SamplerSettings(steps=0))
    assert handle.placement.events == []
