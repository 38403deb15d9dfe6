"""Tiled decodes and encodes give every video length its exact frame count, each frame written.

Tencent's temporal tiling returns the wrong count when the tile is not a multiple of 16 frames (8-frame
tiles give 11 frames for 9); these tests pin ours for all lengths and the tilings a user can pick.
"""

from __future__ import annotations

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.latent import latent_frames, video_frames
from hunyuanvideo_pack.hunyuan_model.vae import AUTO_LADDER, CausalVideoVAE, Tiling, VAEConfig, decode, encode
from hunyuanvideo_pack.hunyuan_model.vae.tiling import TilePlan, decode_plan, encode_plan

pytestmark = pytest.mark.usefixtures("one_thread")


TILINGS = [*AUTO_LADDER, Tiling(0, 0, 8, 4), Tiling(0, 0, 12, 4), Tiling(0, 0, 16, 8), Tiling(0, 0, 20, 0)]


def covered(plan: TilePlan, scale) -> list[list[int]]:
    """Output indices each time tile writes; ``scale`` maps a tile's input length to its output length."""
    written = []
    for span in plan.time.spans:
        length = scale(span.stop - span.start) - span.drop
        written.append(list(range(span.out_start, span.out_start + length)))
    return written


@pytest.mark.parametrize("tiling", TILINGS, ids=lambda t: t.describe())
def test_time_tiles_cover_every_frame_and_end_at_the_last(tiling):
    for latent_length in range(1, 70):
        frames = video_frames(latent_length)
        for plan, scale, total in (
            (decode_plan((1, 16, latent_length, 4, 4), tiling), video_frames, frames),
            (encode_plan((1, 3, frames, 32, 32), tiling), latent_frames, latent_length),
        ):
            tiles = covered(plan, scale)
            starts = [tile[0] for tile in tiles]
            assert starts == sorted(starts) and starts[0] == 0, (latent_length, plan.time.spans)
            assert set().union(*tiles) == set(range(total)), (latent_length, plan.time.spans)
            assert tiles[-1][-1] == total - 1


@pytest.mark.parametrize("latent_length", [1, 3, 9])
def test_decode_and_encode_give_the_exact_frame_counts(latent_length):
    torch.manual_seed(0)
    vae = CausalVideoVAE(VAEConfig.tiny()).eval()
    z = torch.randn(1, 16, latent_length, 2, 2)
    for tiling in (None, Tiling(0, 0, 8, 4), Tiling(8, 0, 12, 4)):
        frames = decode(vae, z, tiling)
        assert frames.shape == (1, video_frames(latent_length), 16, 16, 3) and torch.isfinite(frames).all()
        assert encode(vae, frames, tiling).shape == z.shape
