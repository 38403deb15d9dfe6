"""Enhance-A-Video: the factor against its definition on hand-made maps and on q, k, and its use in blocks."""

from __future__ import annotations

import pytest
import torch
from tiny_sampling import embeds, handle, tiny_model

from hunyuanvideo_pack.hunyuan_model.dit.blocks import AttentionSpec, DoubleStreamBlock, SingleStreamBlock
from hunyuanvideo_pack.hunyuan_model.dit.rope import rope_tables
from hunyuanvideo_pack.hunyuan_model.extras import (
    EnhanceAVideo,
    StepRange,
    VideoOptions,
    enhance_factor,
    factor_from_maps,
    temporal_maps,
)
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample


def test_factor_of_hand_made_maps_is_mean_off_diagonal_times_frames_plus_weight():
    uniform = torch.full((5, 2, 4, 4), 0.25)  # every frame attends 1/4 to each: off-diagonal mean 1/4
    assert factor_from_maps(uniform, weight=2.0).item() == pytest.approx((4 + 2) * 0.25)
    itself = torch.eye(3).expand(4, 2, 3, 3)  # frames attend only to themselves: mean 0, clamped to 1
    assert factor_from_maps(itself, weight=4.0).item() == 1.0
    two = torch.tensor(
        [[[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.6, 0.2, 0.2]], [[0.2, 0.4, 0.4], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8]]]
    )
    off = (0.3 + 0.2 + 0.1 + 0.1 + 0.6 + 0.2 + 0.4 + 0.4 + 0.3 + 0.3 + 0.1 + 0.1) / 12  # two maps, 6 entries each
    assert factor_from_maps(two, weight=3.0).item() == pytest.approx(max(1.0, off * (3 + 3)))
    assert factor_from_maps(torch.ones(7, 2, 1, 1), weight=3.0).item() == 1.0  # one frame: nothing to enhance


def test_factor_from_q_k_follows_the_definition_per_video():
    g = torch.Generator().manual_seed(0)
    frames, positions, heads, dim = 5, 300, 2, 16  # 300 positions: two spatial chunks
    q = torch.randn(2, frames * positions, heads, dim, generator=g) * 3
    k = torch.randn(2, frames * positions, heads, dim, generator=g) * 3
    got = enhance_factor(q, k, frames, weight=4.0)
    assert got.shape == (2, 1, 1)
    for b in range(2):
        # the definition written out: per position s and head h, softmax over frames of q_t . k_t' / sqrt(d)
        qs = q[b].reshape(frames, positions, heads, dim)
        ks = k[b].reshape(frames, positions, heads, dim)
        logits = torch.einsum("tshd,ushd->shtu", qs, ks) / dim**0.5
        maps = logits.softmax(-1)
        expected = factor_from_maps(maps, 4.0)
        assert got[b].item() == pytest.approx(expected.item(), rel=1e-5)
        assert torch.allclose(temporal_maps(q[b], k[b], frames), maps, atol=1e-6)
        assert expected.item() > 1.0  # the test exercises the unclamped branch


@pytest.mark.parametrize("kind", ["double", "single"])
def test_blocks_scale_exactly_the_video_tokens_attention_output(kind):
    torch.manual_seed(0)
    hidden, heads, grid = 256, 2, (3, 2, 2)
    block = (DoubleStreamBlock if kind == "double" else SingleStreamBlock)(hidden, heads, 512)
    rope = rope_tables(grid, (16, 56, 56), 256.0)
    img, txt, vec = torch.randn(1, 12, hidden), torch.randn(1, 4, hidden), torch.randn(1, hidden)

    def run(spec):
        if kind == "double":
            return torch.cat(block(img.clone(), txt.clone(), vec, rope, spec), dim=1)
        return block(torch.cat((img, txt), dim=1), vec, rope, spec)

    plain = run(AttentionSpec())
    assert torch.equal(run(AttentionSpec(enhance=lambda q, k: torch.ones(1, 1, 1))), plain)
    seen = []

    def double_it(q, k):
        seen.append(q.shape[1])
        return torch.full((1, 1, 1), 2.0)

    doubled = run(AttentionSpec(enhance=double_it))
    assert seen == [12]  # only the 12 video tokens reach the factor
    assert not torch.equal(doubled[:, :12], plain[:, :12])
    if kind == "double":
        assert torch.equal(doubled[:, 12:], plain[:, 12:])  # the text stream's attention is not scaled


def test_enhance_off_is_bit_identical_and_on_changes_the_video_within_its_steps():
    model = tiny_model()
    latent = torch.zeros(1, 16, 4, 4, 4)
    settings = SamplerSettings(steps=3)

    def run(options):
        return sample(handle(model, options), embeds(model.config), latent, 0, settings)

    plain = run(None)
    assert torch.equal(run(VideoOptions()), plain)
    enhanced = run(VideoOptions(enhance=EnhanceAVideo(weight=50.0)))
    assert torch.isfinite(enhanced).all() and not torch.equal(enhanced, plain)
    # a step range that holds no step (0.5..0.6 of 3 steps: 0, 1/3, 2/3) changes nothing
    assert torch.equal(run(VideoOptions(enhance=EnhanceAVideo(weight=50.0, steps=StepRange(0.5, 0.6)))), plain)
    assert torch.equal(run(VideoOptions(enhance=EnhanceAVideo(50.0, double_blocks=False, single_blocks=False))), plain)
