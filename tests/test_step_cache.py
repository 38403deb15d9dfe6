"""The step cache: off is bit-identical; TeaCache, MagCache and the first-block cache decide exactly as direct
transcriptions of their published algorithms on a scripted sequence of model inputs, and reuse exactly the
residual they define; runs are deterministic, cancellable, reset per run, per CFG branch, and skip block swap."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_sampling import make_handle, random_prompts, tiny_model

from hunyuanvideo_pack.hunyuan_model.conditioning import TextEmbeds
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle
from hunyuanvideo_pack.hunyuan_model.offload import BlockSwap
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample
from hunyuanvideo_pack.hunyuan_model.step_cache import (
    MAGCACHE_RATIOS_544,
    MAGCACHE_RATIOS_720,
    TEACACHE_COEFFICIENTS,
    StepCache,
    StepCacheSession,
    nearest_steps,
)

CPU = torch.device("cpu")
SHAPE = (1, 16, 2, 8, 8)
STEPS = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return tiny_model(double_blocks=2, single_blocks=2)


@pytest.fixture(scope="module")
def embeds(model):
    return TextEmbeds(random_prompts(model.config, (5,), seed=2))


def cached(model, cache, placement=None) -> TransformerHandle:
    handle = make_handle(model)
    if placement is not None:
        handle = dataclasses.replace(handle, placement=placement)
    return dataclasses.replace(handle, step_cache=cache)


def run(handle, embeds, steps=STEPS, **kwargs):
    latent = torch.zeros(SHAPE)
    return sample(
        handle, embeds, latent, seed=5, settings=SamplerSettings(steps=steps, **kwargs.pop("s", {})), **kwargs
    )


# --- direct transcriptions of the published code (numpy, the authors' names) ---------------------------------


def teacache_transcription(indicators, rel_l1_thresh, num_steps):
    """TeaCache4HunyuanVideo/teacache_sample_video.py:98-113, one call per forward."""
    cnt, accumulated, previous, decisions, sums = 0, 0, None, [], []
    rescale_func = np.poly1d(TEACACHE_COEFFICIENTS)
    for modulated_inp in indicators:
        if cnt == 0 or cnt == num_steps - 1:
            should_calc = True
            accumulated = 0
        else:
            accumulated += rescale_func(((modulated_inp - previous).abs().mean() / previous.abs().mean()).cpu().item())
            if accumulated < rel_l1_thresh:
                should_calc = False
            else:
                should_calc = True
                accumulated = 0
        sums.append(accumulated)
        previous = modulated_inp
        cnt += 1
        decisions.append(should_calc)
    return decisions, sums


def magcache_transcription(mag_ratios, num_steps, thresh, K, retention_ratio):
    """MagCache4HunyuanVideo/magcache_sample_video.py:20-27 (nearest_interp) and :88-102."""
    src = np.array(mag_ratios)
    scale = (len(src) - 1) / (num_steps - 1)
    mag_ratios = src[np.round(np.arange(num_steps) * scale).astype(int)]
    accumulated_ratio, accumulated_err, accumulated_steps, decisions = 1.0, 0, 0, []
    for cnt in range(num_steps):
        skip_forward = False
        if cnt >= int(retention_ratio * num_steps):
            accumulated_ratio = accumulated_ratio * mag_ratios[cnt]
            accumulated_err += np.abs(1 - accumulated_ratio)
            accumulated_steps += 1
            if accumulated_err <= thresh and accumulated_steps <= K:
                skip_forward = True
            else:
                accumulated_ratio, accumulated_steps, accumulated_err = 1.0, 0, 0
        decisions.append(not skip_forward)
    return decisions


def first_block_transcription(residuals, threshold):
    """ParaAttention first_block_cache/utils.py:221-234 and :270-286: compare with the last computed residual."""
    previous, decisions = None, []
    for residual in residuals:
        mean_diff = (previous - residual).abs().mean() if previous is not None else None
        can_use_cache = previous is not None and (mean_diff / previous.abs().mean()).item() < threshold
        if not can_use_cache:
            previous = residual
        decisions.append(not can_use_cache)
    return decisions


def tencent_indicator(block, img, vec):
    """Tencent's modulate(img_norm1(img), shift, scale) with LayerNorm(elementwise_affine=False, eps=1e-6)."""
    shift, scale = block.img_mod.linear(F.silu(vec)).chunk(6, dim=-1)[:2]
    return F.layer_norm(img, img.shape[-1:], eps=1e-6) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


# --- scripted forwards through the session ---------------------------------------------------------------------


class Scripted:
    """Runs ``len(jumps)`` forwards of the tiny model through a step cache session on scripted latents
    (each moved from the previous one by ``jumps[i]`` times noise, the timestep by ``100 * jumps[i]``), recording what the session saw (outer)
    and what it let through (inner)."""

    def __init__(self, model, cache, jumps, prompts):
        self.outer, self.inner = [], []
        session = StepCacheSession(cache, model, len(jumps), SHAPE, CPU)
        runner = self._spy(self.outer, session.wrap(self._spy(self.inner, lambda name, m, *a: m(*a))))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(SHAPE, generator=g)
        self.outputs = []
        with model.using_runner(runner):
            forward = session.counting(
                lambda x, t: model(x, t, prompts.text_states, prompts.text_mask, prompts.pooled, guidance=6.0)
            )
            t = 900.0
            for jump in jumps:
                x = x + jump * torch.randn(SHAPE, generator=g)
                t -= 100 * jump
                self.outputs.append(forward(x, torch.tensor([t])))
        self.session = session

    @staticmethod
    def _spy(log, runner):
        def spy(name, module, *args):
            out = runner(name, module, *args)
            log.append((name, args, out))
            return out

        return spy

    def calls(self, which, name):
        return [(args, out) for n, args, out in getattr(self, which) if n == name]

    def decisions(self):
        return [computed for _, _, computed in self.session.stats.decisions]


JUMPS = [0, 1e-3, 1e-3, 1e-3, 0.5, 1e-3, 1e-3, 1e-3, 1e-3, 2e-3, 1e-3, 1e-3]


def check_residual_reuse(scripted, start_name, start_index):
    """Reused forwards hand final_layer the video tokens plus (final input - start) of the last computed forward."""
    starts = scripted.calls("outer", start_name)
    finals_outer = scripted.calls("outer", "final_layer")
    finals_inner = scripted.calls("inner", "final_layer")
    residual = None
    for decision, (start_args, start_out), (outer_args, _), (inner_args, _) in zip(
        scripted.decisions(), starts, finals_outer, finals_inner
    ):
        start = start_args[0] if start_index == "input" else start_out[0]
        if decision:
            assert torch.equal(inner_args[0], outer_args[0])
            residual = outer_args[0] - start
        else:
            assert torch.equal(inner_args[0], outer_args[0] + residual)


def test_teacache_decisions_and_accumulator_equal_the_published_algorithm(model):
    prompts = TextEmbeds(random_prompts(model.config, (5,), seed=2)).positive
    scripted = Scripted(model, StepCache("teacache", threshold=0.15), JUMPS, prompts)
    block = model.double_blocks[0]
    indicators = [tencent_indicator(block, args[0], args[2]) for args, _ in scripted.calls("outer", "double_blocks.0")]
    expected, sums = teacache_transcription(indicators, 0.15, len(JUMPS))
    assert scripted.decisions() == expected
    assert True in expected and False in expected
    rule = scripted.session.branches[0].rule
    assert rule.accumulated == pytest.approx(sums[-1], rel=1e-6, abs=1e-9)
    # a reused step calls no block at all; a computed one calls every block
    inner_blocks = [n for n, _, _ in scripted.inner if "blocks." in n]
    assert len(inner_blocks) == 4 * expected.count(True)
    check_residual_reuse(scripted, "double_blocks.0", "input")


def test_magcache_decisions_equal_the_published_algorithm_at_its_defaults():
    for steps in (10, 30, 50):
        cache = StepCache("magcache")
        assert (cache.threshold, cache.start, cache.max_skips) == (0.24, 0.2, 6)
        session_rule = [None]
        from hunyuanvideo_pack.hunyuan_model.step_cache import MagCacheRule

        rule = MagCacheRule(cache.threshold, cache.ratios_for(steps, 720), cache.max_skips)
        session_rule[0] = [rule.decide(i, forced=i not in cache.window(steps)) for i in range(steps)]
        expected = magcache_transcription(MAGCACHE_RATIOS_720, steps, 0.24, 6, 0.2)
        assert session_rule[0] == expected, steps
        assert expected.count(False) > 0
    assert nearest_steps(list(MAGCACHE_RATIOS_544), 50) == list(MAGCACHE_RATIOS_544)


def test_magcache_in_the_model_reuses_its_residual_and_picks_the_table_by_height(model):
    prompts = TextEmbeds(random_prompts(model.config, (5,), seed=2)).positive
    scripted = Scripted(model, StepCache("magcache"), JUMPS, prompts)
    # SHAPE is 64 pixels high: the 544 table is the nearer one
    assert scripted.decisions() == magcache_transcription(MAGCACHE_RATIOS_544, len(JUMPS), 0.24, 6, 0.2)
    check_residual_reuse(scripted, "double_blocks.0", "input")


def test_first_block_cache_follows_its_definition(model):
    prompts = TextEmbeds(random_prompts(model.config, (5,), seed=2)).positive
    scripted = Scripted(model, StepCache("first_block", threshold=0.06), JUMPS, prompts)
    residuals = [out[0] - args[0] for args, out in scripted.calls("inner", "double_blocks.0")]
    expected = first_block_transcription(residuals, 0.06)
    assert scripted.decisions() == expected
    assert True in expected[1:] and False in expected
    assert len(residuals) == len(JUMPS)  # block 0 runs every step
    check_residual_reuse(scripted, "double_blocks.0", "output")


@pytest.mark.parametrize("method", ["teacache", "magcache", "first_block"])
def test_threshold_zero_is_bit_identical_to_no_cache(model, embeds, method):
    plain = run(make_handle(model), embeds, steps=6)
    handle = cached(model, StepCache(method, threshold=0.0))
    assert torch.equal(run(handle, embeds, steps=6), plain)
    assert handle.step_cache.last_run.reused == 0 and handle.step_cache.last_run.computed == 6


def test_cached_run_is_deterministic_resets_per_run_and_logs_its_counts(model, embeds, caplog):
    cache = StepCache("magcache")
    with caplog.at_level(logging.INFO, logger="HunyuanVideo"):
        first = run(cached(model, cache), embeds)
    stats = cache.last_run
    assert stats.reused > 0 and stats.computed + stats.reused == STEPS
    assert f"{stats.computed} of {STEPS} model passes computed the full model, {stats.reused} reused" in caplog.text
    assert torch.equal(run(cached(model, cache), embeds), first)
    assert cache.last_run is not stats and cache.last_run.decisions == stats.decisions
    assert not torch.equal(first, run(make_handle(model), embeds))


def test_cancel_stops_the_run_restores_the_runner_and_the_next_run_starts_fresh(model, embeds):
    cache = StepCache("teacache", threshold=0.3)
    handle = cached(model, cache)
    reference = run(handle, embeds)

    def cancel(done, total, x0):
        if done == 5:
            raise InterruptedError("cancelled")

    runner = model.runner
    with pytest.raises(InterruptedError):
        run(handle, embeds, on_step=cancel)
    assert model.runner is runner
    assert len(cache.last_run.decisions) == 5
    assert torch.equal(run(handle, embeds), reference)


def test_true_cfg_one_prompt_after_the_other_keeps_a_state_per_branch(model):
    embeds = TextEmbeds(
        random_prompts(model.config, (5,), seed=2), random_prompts(model.config, (4,), seed=9), cfg_scale=4.0
    )
    cache = StepCache("teacache", threshold=0.3)
    run(cached(model, cache), embeds, batch_cfg=False)
    branches = {(step, branch) for step, branch, _ in cache.last_run.decisions}
    assert branches == {(s, b) for s in range(STEPS) for b in (0, 1)}
    batched = StepCache("teacache", threshold=0.3)
    run(cached(model, batched), embeds, batch_cfg=True)
    assert {branch for _, branch, _ in batched.last_run.decisions} == {0}


def test_reused_steps_copy_no_block_under_block_swap(model, embeds):
    trace = []
    cache = StepCache("magcache")
    out = run(cached(model, cache, BlockSwap(double_blocks=2, single_blocks=2, trace=trace)), embeds)
    computed = [name for kind, name in trace if kind == "compute" and name == "double_blocks.0"]
    assert len(computed) == cache.last_run.computed < STEPS
    copies = [name for kind, name in trace if kind == "copy"]
    # each computed forward copies the 4 swapped blocks (2 slots), none for the reused ones (one prefetch at most)
    assert len(copies) <= 4 * cache.last_run.computed + 1
    assert torch.equal(out, run(cached(model, StepCache("magcache")), embeds))


def test_step_cache_node_sets_the_method_defaults_on_a_new_handle(model):
    from hunyuanvideo_pack.nodes.step_cache import HunyuanVideoStepCache

    handle = make_handle(model)
    (out,) = HunyuanVideoStepCache().configure(handle, "magcache", -1.0, -1.0, 1.0)
    assert out.model is model and handle.step_cache is None
    assert (out.step_cache.method, out.step_cache.threshold, out.step_cache.start) == ("magcache", 0.24, 0.2)
    (out,) = HunyuanVideoStepCache().configure(handle, "teacache", 0.1, 0.3, 0.9)
    assert (out.step_cache.threshold, out.step_cache.start, out.step_cache.end) == (0.1, 0.3, 0.9)
    with pytest.raises(ValueError, match="0 <= start <= end <= 1"):
        HunyuanVideoStepCache().configure(handle, "teacache", 0.1, 0.8, 0.5)


def test_a_batch_shares_the_decisions_and_each_video_reuses_its_own_residual(model, embeds):
    """MagCache's decisions depend only on the step, so video 1 of a batch of 2 is the video seed + 1 makes alone
    (up to the float rounding of a batched forward)."""
    settings = SamplerSettings(steps=STEPS)
    batch = sample(cached(model, StepCache("magcache")), embeds, torch.zeros(2, *SHAPE[1:]), 5, settings)
    alone = sample(cached(model, StepCache("magcache")), embeds, torch.zeros(SHAPE), 6, settings)
    assert ((batch[1:] - alone).abs().max() / alone.abs().max()).item() < 1e-5


def test_a_window_from_the_first_step_still_computes_before_it_reuses(model, embeds):
    cache = StepCache("magcache", start=0.0)
    run(cached(model, cache), embeds)
    assert cache.last_run.decisions[0] == (0, 0, True) and cache.last_run.reused > 0
