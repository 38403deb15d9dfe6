"""Context windows over time: windows cover every frame, blend shares sum to one, one window is no window,
and windows compose with block swap and the other options."""

from __future__ import annotations

import pytest
import torch
from tiny_sampling import CPU, embeds, handle, tiny_model

from hunyuanvideo_pack.hunyuan_model.dit.riflex import Riflex
from hunyuanvideo_pack.hunyuan_model.extras import ContextWindows, VideoOptions, WindowedVelocity
from hunyuanvideo_pack.hunyuan_model.handle import WholeModel
from hunyuanvideo_pack.hunyuan_model.offload import BlockSwap
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample


@pytest.mark.parametrize("weighting", ["uniform", "pyramid"])
@pytest.mark.parametrize(
    ("frames", "length", "overlap"), [(33, 9, 3), (20, 8, 0), (17, 16, 15), (5, 9, 4), (64, 17, 4)]
)
def test_windows_cover_all_frames_and_shares_sum_to_one(weighting, frames, length, overlap):
    plan = ContextWindows(length, overlap, weighting).blend_weights(frames)
    total = torch.zeros(frames, dtype=torch.float64)
    for window, share in plan:
        assert 1 <= len(window) <= length and window.start >= 0 and window.stop <= frames
        assert share.shape == (len(window),) and (share > 0).all()
        total[window.start : window.stop] += share.double()
    torch.testing.assert_close(total, torch.ones(frames, dtype=torch.float64), rtol=0, atol=1e-6)
    starts = [w.start for w, _ in plan]
    assert starts == sorted(set(starts))


def test_comfyui_static_windows_and_pyramid_weights():
    # comfy/context_windows.py:505-521 (static_standard) and 564-573 (pyramid), by hand
    assert ContextWindows(8, 2).windows(20) == [range(0, 8), range(6, 14), range(12, 20)]
    assert ContextWindows(8, 2).windows(21) == [range(0, 8), range(6, 14), range(12, 20), range(13, 21)]
    assert ContextWindows(5, 1).window_weights(5).tolist() == [1, 2, 3, 2, 1]
    assert ContextWindows(4, 1).window_weights(4).tolist() == [1, 2, 2, 1]
    assert ContextWindows(4, 1, "uniform").window_weights(4).tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="overlap from 0 to length - 1.*length 4 and overlap 4"):
        ContextWindows(4, 4)


def test_a_framewise_velocity_is_unchanged_by_windowing():
    x = torch.randn(1, 2, 23, 1, 1, dtype=torch.float64)
    frame_scale = torch.linspace(0.5, 2.0, 23, dtype=torch.float64).reshape(1, 1, -1, 1, 1)
    seen = []

    def velocity(part, t):
        seen.append(part.shape[2])
        return part * 3 + 1

    out = WindowedVelocity(velocity, ContextWindows(7, 3, "pyramid"))(x * frame_scale, torch.tensor([500.0]))
    torch.testing.assert_close(out, x * frame_scale * 3 + 1, rtol=0, atol=1e-12)
    assert max(seen) == 7 and len(seen) == 5


def run(model, options, frames=7, **fields):
    latent = torch.zeros(1, 16, frames, 4, 4)
    return sample(handle(model, options, **fields), embeds(model.config), latent, 0, SamplerSettings(steps=2))


def test_one_window_over_the_whole_length_is_bit_identical_to_no_windows():
    model = tiny_model()
    plain = run(model, None)
    assert torch.equal(run(model, VideoOptions(context=ContextWindows(7, 2))), plain)
    assert torch.equal(run(model, VideoOptions(context=ContextWindows(16, 4, "uniform"))), plain)
    windowed = run(model, VideoOptions(context=ContextWindows(4, 2)))
    assert windowed.shape == plain.shape and not torch.equal(windowed, plain)


def test_windows_compose_with_block_swap_and_riflex():
    model = tiny_model()
    options = VideoOptions(context=ContextWindows(4, 2, "pyramid"), riflex=Riflex())
    whole = run(model, options)
    swapped = run(model, options, placement=BlockSwap(double_blocks=2, single_blocks=1, prefetch=True, slots=2))
    assert torch.equal(swapped, whole)
    assert all(p.device == CPU for p in model.parameters())


def test_the_placement_and_memory_plan_see_one_window_not_the_whole_video():
    seen = []

    class Spy(WholeModel):
        def enter(self, model, compute_device, offload_device, latent_shape):
            seen.append(tuple(latent_shape))
            super().enter(model, compute_device, offload_device, latent_shape)

    model = tiny_model()
    run(model, VideoOptions(context=ContextWindows(4, 2)), frames=9, placement=Spy())
    run(model, None, frames=9, placement=Spy())
    assert seen == [(1, 16, 4, 4, 4), (1, 16, 9, 4, 4)]
