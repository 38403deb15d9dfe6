"""RIFLEx: the intrinsic frequency rule, the RoPE tables against the paper's formula, and its use in sampling."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_sampling import embeds, handle, tiny_model

from hunyuanvideo_pack.hunyuan_model.dit.riflex import Riflex, intrinsic_index, periods
from hunyuanvideo_pack.hunyuan_model.dit.rope import rope_tables
from hunyuanvideo_pack.hunyuan_model.extras import VideoOptions
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample

RELEASED = dict(dims=(16, 56, 56), theta=256.0)


def test_hunyuanvideo_intrinsic_pair_is_the_papers_k4_with_period_50():
    # thu-ml/RIFLEx riflex_utils.py:72-75: identify_k(b=256, d=16, N=48) -> k = 4, N_k = 50.
    assert periods(256.0, 16) == [6, 13, 25, 50, 101, 201, 402, 804]
    assert intrinsic_index(256.0, 16) == 4
    assert intrinsic_index(256.0, 16, repeat_frame=20) == 3  # |25-20| < |13-20|


@pytest.mark.parametrize("k", [None, 2])
def test_only_the_intrinsic_temporal_column_changes_to_the_formula(k):
    grid = (60, 2, 3)  # 60 latent frames > N_4 = 50 (and > N_2 = 13)
    plain_cos, plain_sin = rope_tables(grid, **RELEASED)
    cos, sin = Riflex(k).tables(grid, **RELEASED)
    column = (k or 4) - 1
    t = torch.arange(60, dtype=torch.float32).repeat_interleave(6)  # tokens are (t, h, w)-major
    angle = t * (0.9 * 2 * math.pi / 60)  # Eq. 8: 90% of one turn over the video
    torch.testing.assert_close(cos[:, column], angle.cos(), rtol=0, atol=1e-6)
    torch.testing.assert_close(sin[:, column], angle.sin(), rtol=0, atol=1e-6)
    others = [c for c in range(cos.shape[1]) if c != column]
    assert torch.equal(cos[:, others], plain_cos[:, others]) and torch.equal(sin[:, others], plain_sin[:, others])
    # the changed pair now turns less than once over the video: no frame repeats another's angle
    assert angle[-1] < 2 * math.pi


def test_videos_within_the_period_keep_their_tables_bit_for_bit():
    for frames in (1, 33, 50):
        grid = (frames, 2, 2)
        assert all(torch.equal(a, b) for a, b in zip(Riflex().tables(grid, **RELEASED), rope_tables(grid, **RELEASED)))


def test_a_k_outside_the_temporal_pairs_is_refused_with_the_range():
    with pytest.raises(ValueError, match="from 1 to 8.*got 9.*automatic choice \\(4\\)"):
        Riflex(9).tables((60, 1, 1), **RELEASED)


def run(model, options, latent_frames: int, seed: int = 0) -> torch.Tensor:
    latent = torch.zeros(1, 16, latent_frames, 2, 2)
    return sample(handle(model, options), embeds(model.config), latent, seed, SamplerSettings(steps=2))


def test_riflex_off_or_short_is_bit_identical_and_long_uses_the_riflex_tables(monkeypatch):
    model = tiny_model()
    base_short = run(model, None, 9)
    assert torch.equal(run(model, VideoOptions(), 9), base_short)
    assert torch.equal(run(model, VideoOptions(riflex=Riflex()), 9), base_short)

    long_plain = run(model, None, 52)
    long_riflex = run(model, VideoOptions(riflex=Riflex()), 52)
    assert not torch.equal(long_riflex, long_plain)
    # the same as a model whose own RoPE cache held the RIFLEx tables
    monkeypatch.setattr(model._rope, "get", lambda grid, device: Riflex().tables(grid, (16, 56, 56), 256.0))
    assert torch.equal(run(model, None, 52), long_riflex)
