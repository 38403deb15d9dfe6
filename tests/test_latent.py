import pytest
import torch

from hunyuanvideo_pack.hunyuan_model import VideoGeometry, empty_latent, latent_frames, video_frames
from hunyuanvideo_pack.nodes.latent import HunyuanVideoEmptyLatent


def test_default_t2v_size_gives_the_reference_latent_shape():
    # 720x1280x129 is [1, 16, 33, 90, 160] in Tencent's pipeline (spec 6.2).
    assert VideoGeometry(width=1280, height=720, frames=129).latent_shape == (1, 16, 33, 90, 160)
    assert VideoGeometry(width=848, height=480, frames=73, batch=2).latent_shape == (2, 16, 19, 60, 106)


@pytest.mark.parametrize("frames, latents", [(1, 1), (5, 2), (73, 19), (129, 33)])
def test_frame_counts_round_trip(frames, latents):
    assert latent_frames(frames) == latents
    assert video_frames(latents) == frames


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(width=850, height=480, frames=73),
            "width must be a positive multiple of 16, got 850. Nearest valid: 848 or 864",
        ),
        (dict(width=848, height=8, frames=73), "height must be a positive multiple of 16, got 8. Nearest valid: 16"),
        (dict(width=848, height=480, frames=72), "frames must be of the form 4k+1 (1, 5, 9, ..., 129"),
        (dict(width=848, height=480, frames=0), "got 0. Nearest valid: 1."),
        (dict(width=848, height=480, frames=73, batch=0), "batch must be at least 1, got 0."),
    ],
)
def test_invalid_sizes_name_the_nearest_valid_values(kwargs, message):
    with pytest.raises(ValueError) as error:
        VideoGeometry(**kwargs)
    text = str(error.value).replace(" (the VAE's 8x times the DiT's 2x2 patch)", "")
    assert message in text


def test_frames_error_names_both_neighbours():
    with pytest.raises(ValueError, match=r"got 72\. Nearest valid: 69 or 73\."):
        VideoGeometry(width=16, height=16, frames=72)


def test_empty_latent_is_float32_zeros():
    latent = empty_latent(VideoGeometry(width=64, height=32, frames=9))
    assert latent.shape == (1, 16, 3, 4, 8)
    assert latent.dtype == torch.float32
    assert torch.count_nonzero(latent) == 0


def test_node_returns_a_comfyui_latent_dict():
    (latent,) = HunyuanVideoEmptyLatent().generate(width=848, height=480, frames=73, batch=1)
    assert set(latent) == {"samples"}
    assert latent["samples"].shape == (1, 16, 19, 60, 106)


def test_node_validation_reports_the_error_text_before_running():
    assert HunyuanVideoEmptyLatent.VALIDATE_INPUTS(width=848, height=480, frames=73) is True
    message = HunyuanVideoEmptyLatent.VALIDATE_INPUTS(width=848, height=480, frames=70)
    assert "Nearest valid: 69 or 73" in message
