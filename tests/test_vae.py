"""The causal 3D VAE: parity with diffusers, tiling, loading every key layout, memory rule, nodes."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from hunyuanvideo_pack.hunyuan_model import VAE_SCALING_FACTOR
from hunyuanvideo_pack.hunyuan_model.vae import (
    AUTO_LADDER,
    CausalVideoVAE,
    Tiling,
    VAEConfig,
    VAEOutOfMemoryError,
    auto_tiling,
    canonical_state_dict,
    decode,
    decode_peak_bytes,
    encode,
    load_vae,
)
from hunyuanvideo_pack.hunyuan_model.vae import layers as vae_layers
from hunyuanvideo_pack.hunyuan_model.vae.tiling import decode_plan
from hunyuanvideo_pack.nodes import comfy_env
from hunyuanvideo_pack.nodes.latent import HunyuanVideoEmptyLatent
from hunyuanvideo_pack.nodes.vae import HunyuanVideoVAEDecode, HunyuanVideoVAEEncode, HunyuanVideoVAELoader

# Small enough for CPU, with a partial last tile in every direction and two tiles in time.
TILING = Tiling(tile_size=32, overlap=16, temporal_size=12, temporal_overlap=4)
TILED_LATENT_SHAPE = (1, 16, 5, 6, 5)
GIB = 1024**3


pytestmark = pytest.mark.usefixtures("one_thread")


def randomized_tiny_vae(seed: int = 0) -> CausalVideoVAE:
    """Tiny VAE with every weight random (norm scales too) and peaked attention, outputs inside [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    vae = CausalVideoVAE(VAEConfig.tiny()).eval()
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=generator) / p[0].numel() ** 0.5)
            else:
                mean = 1.0 if re.search(r"norm.*\.weight$", name) else 0.0
                p.copy_(mean + 0.2 * torch.randn(p.shape, generator=generator))
        for attention in (vae.encoder.mid_block.attentions[0], vae.decoder.mid_block.attentions[0]):
            attention.to_q.weight.mul_(2)
            attention.to_k.weight.mul_(2)
        vae.decoder.conv_out.conv.weight.mul_(0.2)  # so that parity is not hidden by clamping to [0, 1]
        vae.decoder.conv_out.conv.bias.zero_()
    return vae


@pytest.fixture(scope="module")
def vae():
    return randomized_tiny_vae()


@pytest.fixture(scope="module")
def reference(vae):
    from diffusers import AutoencoderKLHunyuanVideo

    config = vae.config
    model = AutoencoderKLHunyuanVideo(
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        norm_num_groups=config.norm_groups,
    ).eval()
    model.load_state_dict(vae.state_dict(), strict=True)
    return model


def latent(shape, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def frames(shape, seed=2):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def reference_decode(reference, z):
    with torch.inference_mode():
        raw = reference.decode(z).sample  # b 3 f h w in about [-1, 1]
    return raw.permute(0, 2, 3, 4, 1) * 0.5 + 0.5


def assert_close_to_range(ours, theirs, tolerance=1e-4):
    """Max absolute difference within ``tolerance`` of the reference output's range."""
    span = (theirs.max() - theirs.min()).item()
    error = (ours - theirs).abs().max().item()
    assert error <= tolerance * span, f"max abs difference {error:.2e} for an output range of {span:.3f}"


# ---------------------------------------------------------------------------------------------
# Architecture


def test_released_config_has_diffusers_keys_and_shapes_and_246m_parameters():
    from diffusers import AutoencoderKLHunyuanVideo

    with torch.device("meta"):
        ours = CausalVideoVAE(VAEConfig.released())
        theirs = AutoencoderKLHunyuanVideo()
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == 246_478_803  # 493 MB in bf16, as the released file
    assert VAEConfig.from_state_dict(ours.state_dict()) == VAEConfig.released()
    assert VAEConfig.released().scaling_factor == VAE_SCALING_FACTOR


def test_tiny_config_keeps_the_compression_and_round_trips_through_its_weights(vae):
    assert VAEConfig.from_state_dict(vae.state_dict()) == VAEConfig.tiny()
    with torch.inference_mode():
        video = vae.decode_tile(latent((1, 16, 3, 2, 3)))
        assert video.shape == (1, 3, 9, 16, 24)  # 1 + 4k frames, 8x space
        assert vae.encode_tile(video).shape == (1, 16, 3, 2, 3)


def test_chunked_convolutions_and_attention_match_one_piece(vae, monkeypatch):
    z = latent((1, 16, 3, 3, 2))
    x = frames((1, 3, 9, 24, 16)) * 2 - 1
    with torch.inference_mode():
        whole = vae.decode_tile(z), vae.encode_tile(x)
        monkeypatch.setattr(vae_layers, "CHUNK_ELEMENTS", 1)  # one output frame per convolution call
        monkeypatch.setattr(vae_layers, "ATTENTION_SCORE_ELEMENTS", 1)  # one query row per attention call
        chunked = vae.decode_tile(z), vae.encode_tile(x)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Parity with diffusers (float32)


def test_untiled_decode_matches_diffusers(vae, reference):
    reference.use_framewise_decoding = False
    z = latent((2, 16, 3, 4, 3))
    ours = decode(vae, z)
    theirs = reference_decode(reference, z)
    assert ours.shape == (2, 9, 32, 24, 3)
    assert 0 < theirs.min() and theirs.max() < 1  # no clamping hides a difference
    assert_close_to_range(ours, theirs)


def test_untiled_encode_matches_diffusers(vae, reference):
    reference.use_framewise_encoding = False
    video = frames((1, 9, 32, 24, 3))
    ours = encode(vae, video)
    with torch.inference_mode():
        theirs = reference.encode(video.permute(0, 4, 1, 2, 3) * 2 - 1).latent_dist.mean
    assert ours.shape == (1, 16, 3, 4, 3)
    assert_close_to_range(ours, theirs)


def _reference_tiling(reference, tiling: Tiling):
    reference.enable_tiling(
        tile_sample_min_height=tiling.tile_size,
        tile_sample_min_width=tiling.tile_size,
        tile_sample_stride_height=tiling.tile_size - tiling.overlap,
        tile_sample_stride_width=tiling.tile_size - tiling.overlap,
        tile_sample_min_num_frames=tiling.temporal_size,
        tile_sample_stride_num_frames=tiling.temporal_size - tiling.temporal_overlap,
    )
    reference.use_framewise_decoding = reference.use_framewise_encoding = True


def test_tiled_decode_matches_diffusers_with_the_same_tiles(vae, reference):
    _reference_tiling(reference, TILING)
    z = latent(TILED_LATENT_SHAPE)
    ours = decode(vae, z, TILING)
    theirs = reference_decode(reference, z)
    assert ours.shape == theirs.shape == (1, 17, 48, 40, 3)
    assert_close_to_range(ours, theirs)


def test_tiled_encode_matches_diffusers_with_the_same_tiles(vae, reference):
    _reference_tiling(reference, TILING)
    video = frames((1, 17, 48, 40, 3))
    ours = encode(vae, video, TILING)
    with torch.inference_mode():
        theirs = reference.encode(video.permute(0, 4, 1, 2, 3) * 2 - 1).latent_dist.mean
    assert ours.shape == theirs.shape == (1, 16, 5, 6, 5)
    assert_close_to_range(ours, theirs)


# ---------------------------------------------------------------------------------------------
# Tiling


def test_tiled_decode_equals_each_tiles_own_decode_where_no_blending_reaches(vae):
    tiling = Tiling(tile_size=32, overlap=8, temporal_size=12, temporal_overlap=4)  # narrow overlaps: big interiors
    z = latent(TILED_LATENT_SHAPE)
    tiled = decode(vae, z, tiling)
    plan = decode_plan(z.shape, tiling)
    compared = 0
    for k, ts in enumerate(plan.time.spans):
        frame_end = plan.time.spans[k + 1].out_start if k + 1 < len(plan.time.spans) else tiled.shape[1]
        frame_start = ts.out_start + (plan.time.blend if k else 0)
        for i, hs in enumerate(plan.height.spans):
            for j, ws in enumerate(plan.width.spans):
                with torch.inference_mode():
                    alone = vae.decode_tile(z[:, :, ts.start : ts.stop, hs.start : hs.stop, ws.start : ws.stop])
                alone = alone[:, :, ts.drop :].permute(0, 2, 3, 4, 1).mul(0.5).add(0.5)
                top, left = (plan.height.blend if i else 0), (plan.width.blend if j else 0)
                bottom, right = min(plan.height.keep, alone.shape[2]), min(plan.width.keep, alone.shape[3])
                if top >= bottom or left >= right:
                    continue  # a last tile narrower than the overlap is blended everywhere
                expected = alone[:, : frame_end - ts.out_start][:, frame_start - ts.out_start :, top:bottom, left:right]
                y, x = hs.out_start, ws.out_start
                got = tiled[:, frame_start:frame_end, y + top : y + bottom, x + left : x + right]
                torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
                compared += got.numel()
    assert compared > 0.45 * tiled.numel()  # half of the video is some tile's untouched interior


def test_decode_plan_follows_tencents_grid_at_720p():
    plan = decode_plan((1, 16, 33, 90, 160), Tiling())
    # Latent stride 12 in time (tile 16 + 1 context), 24 in space (tile 32): spec section 4.3.
    assert [(s.start, s.stop, s.out_start, s.drop) for s in plan.time.spans] == [
        (0, 17, 0, 0),
        (12, 29, 49, 1),
        (24, 33, 97, 1),
    ]
    assert [s.start for s in plan.height.spans] == [0, 24, 48, 72]
    assert [s.start for s in plan.width.spans] == [0, 24, 48, 72, 96, 120, 144]
    assert (plan.time.blend, plan.height.blend, plan.height.keep) == (16, 64, 192)
    assert decode_plan((1, 16, 16, 32, 32), Tiling()).count == 1  # Tencent tiles only beyond 16 x 32 x 32


def test_tiling_sizes_are_checked():
    with pytest.raises(ValueError, match="multiples of 8 pixels"):
        Tiling(tile_size=100)
    with pytest.raises(ValueError, match="temporal_overlap=64 must be at least 0 and smaller than temporal_size=64"):
        Tiling(temporal_overlap=64)


# ---------------------------------------------------------------------------------------------
# Memory rule


def test_peak_estimate_for_tencents_default_tile_worked_by_hand():
    # A (17, 32, 32) latent tile decodes to 65 x 256 x 256 = 4,259,840 voxels. The peak is the last block's first
    # resnet: input 256 + shortcut 128 + conv1 output 128 = 512 values per voxel, 2 bytes each in bf16:
    # 4,362,076,160. Plus one conv chunk (2^24 elements x (4 + 3 x 2) bytes = 167,772,160), attention scores for
    # one 1024-token frame against 17,408 keys (x 4 bytes = 71,303,168) and the float32 output tile twice
    # (3 x 4,259,840 x 8 = 102,236,160).
    assert decode_peak_bytes(VAEConfig.released(), (17, 32, 32), torch.bfloat16) == 4_703_387_648


@pytest.mark.parametrize(
    "free_gib, expected",
    [
        (8, Tiling(256, 64, 64, 16)),  # 4.70 GB fits in 0.7 x 8 GiB = 6.01 GB; 384 px tiles would need 9.8 GB
        (4, Tiling(256, 64, 32, 8)),  # 3.01 GB budget: 33-frame tiles need 2.47 GB
        (1, Tiling(128, 32, 16, 4)),  # 0.75 GB budget: 192 px x 17 frames needs 0.81 GB, 128 px 0.46 GB
        (0.01, Tiling(128, 32, 8, 4)),  # nothing fits: the smallest tiles
    ],
)
def test_auto_tiling_at_720p_129_frames(free_gib, expected):
    shape = (1, 16, 33, 90, 160)
    assert auto_tiling(VAEConfig.released(), shape, torch.bfloat16, int(free_gib * GIB)) == expected


def test_auto_tiling_leaves_a_small_video_whole():
    assert auto_tiling(VAEConfig.released(), (1, 16, 5, 30, 40), torch.bfloat16, 24 * GIB) == Tiling.off()
    assert AUTO_LADDER[0] == Tiling.off()


def test_out_of_memory_names_smaller_tiles(vae, monkeypatch):
    def exhausted(z):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(vae, "decode_tile", exhausted)
    with pytest.raises(VAEOutOfMemoryError) as error:
        decode(vae, latent((1, 16, 33, 90, 160)), Tiling())
    message = str(error.value)
    assert "256 px tiles (overlap 64), 64-frame tiles (overlap 16)" in message
    assert "Try tile_size 256, overlap 64, temporal_size 16, temporal_overlap 4" in message
    assert isinstance(error.value, torch.cuda.OutOfMemoryError)  # ComfyUI's OOM handling still applies


# ---------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 4, 64, 64), r"an image latent .*not a video latent"),
        ((1, 16, 8, 8), r"an image latent"),
        ((1, 32, 3, 8, 8), r"this latent has 32 channels .* expects 16"),
        ((16, 3, 8, 8, 1, 1), r"5 dimensions"),
    ],
)
def test_wrong_latents_are_explained(vae, shape, message):
    with pytest.raises(ValueError, match=message):
        decode(vae, torch.zeros(shape))


@pytest.mark.parametrize(
    "shape, message",
    [
        ((10, 32, 32, 3), r"1 \+ 4k frames .* got 10\. Trim to 9 frames or pad to 13"),
        ((9, 36, 32, 3), r"frame size 32x36 must be a multiple of 8"),
        ((9, 32, 32, 4), r"expected RGB frames"),
    ],
)
def test_wrong_frames_are_explained(vae, shape, message):
    with pytest.raises(ValueError, match=message):
        encode(vae, torch.zeros(shape))


# ---------------------------------------------------------------------------------------------
# Loading


def _comfy_layout(state: dict) -> dict:
    """What ComfyUI's ``convert_vae_state_dict`` makes of these weights (its internal layout)."""
    renames = [
        ("conv_shortcut", "nin_shortcut"),
        ("conv_norm_out", "norm_out"),
        ("mid_block.attentions.0.", "mid.attn_1."),
    ]
    for i in range(4):
        renames += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.") for j in range(2)]
        if i < 3:
            renames += [(f"down_blocks.{i}.downsamplers.0.", f"down.{i}.downsample.")]
            renames += [(f"up_blocks.{i}.upsamplers.0.", f"up.{3 - i}.upsample.")]
        renames += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{3 - i}.block.{j}.") for j in range(3)]
    renames += [(f"mid_block.resnets.{i}.", f"mid.block_{i + 1}.") for i in range(2)]
    attention = [
        ("group_norm.", "norm."),
        ("to_q.", "q."),
        ("to_k.", "k."),
        ("to_v.", "v."),
        ("to_out.0.", "proj_out."),
    ]
    out = {}
    for key, value in state.items():
        new = key
        for ours, theirs in renames + (attention if "attentions" in key else []):
            new = new.replace(ours, theirs)
        if re.search(r"attn_1\.(q|k|v|proj_out)\.weight$", new):
            value = value.reshape(*value.shape, 1, 1, 1)
        out[new] = value
    return out


@pytest.mark.parametrize("layout", ["tencent_pt", "kijai_safetensors", "comfy_internal", "diffusers_old_attention"])
def test_every_layout_loads_to_the_same_weights(vae, tmp_path, layout):
    state = {k: v.clone() for k, v in vae.state_dict().items()}
    if layout == "tencent_pt":
        path = tmp_path / "pytorch_model.pt"
        torch.save({"state_dict": {f"vae.{k}": v for k, v in state.items()}}, path)
    elif layout == "kijai_safetensors":
        path = tmp_path / "hunyuan_video_vae_bf16.safetensors"
        save_file({k: v.bfloat16() for k, v in state.items()}, path)
    elif layout == "comfy_internal":
        comfy = _comfy_layout(state)
        assert comfy["decoder.mid.attn_1.q.weight"].ndim == 5 and "decoder.up.0.block.2.norm1.weight" in comfy
        path = tmp_path / "saved_from_comfyui.safetensors"
        save_file({f"first_stage_model.{k}": v for k, v in comfy.items()}, path)
    else:
        path = tmp_path / "diffusion_pytorch_model.safetensors"
        old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
        save_file(
            {re.sub(r"(to_q|to_k|to_v|to_out\.0)(?=\.)", lambda m: old[m[1]], k): v for k, v in state.items()}, path
        )
    loaded = load_vae(path, dtype=torch.float32)
    assert loaded.config == VAEConfig.tiny()
    tolerance = 1e-2 if layout == "kijai_safetensors" else 0
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=tolerance, atol=tolerance, msg=key)


def test_diffusers_weights_map_onto_ours_unchanged(reference, vae):
    state = reference.state_dict()
    for prefix in ("", "autoencoder."):  # any prefix before the keys
        assert set(canonical_state_dict({prefix + k: v for k, v in state.items()})) == set(vae.state_dict())


def test_precision_is_chosen_at_load(vae, tmp_path):
    path = tmp_path / "vae.safetensors"
    save_file(vae.state_dict(), path)
    z = latent((1, 16, 2, 2, 2))
    exact = decode(load_vae(path, dtype=torch.float32), z)
    for dtype, tolerance in ((torch.bfloat16, 0.05), (torch.float16, 0.01)):
        low = load_vae(path, dtype=dtype)
        assert low.dtype == dtype
        assert (decode(low, z) - exact).abs().max() < tolerance


def _save(tmp_path, name: str, state: dict):
    path = tmp_path / name
    save_file(state, path)
    return path


@pytest.mark.parametrize(
    "keys, message",
    [
        (
            ["double_blocks.0.img_attn_qkv.weight", "img_in.proj.weight"],
            r"video transformer \(DiT\); load it with HunyuanVideo Model Loader \(HunyuanVideoModelLoader\)",
        ),
        (["model.layers.0.self_attn.q_proj.weight"], "language model .*; load it with .* as its llm"),
        (["text_model.encoder.layers.0.mlp.fc1.weight"], "CLIP text encoder .*; load it with .* as its clip"),
        (["decoder.conv_in.weight", "encoder.conv_in.weight"], "another model's VAE .*; HunyuanVideo needs its own"),
    ],
)
def test_other_models_chosen_as_vae_are_named(tmp_path, keys, message):
    path = _save(tmp_path, "wrong.safetensors", {k: torch.zeros(2, 2) for k in keys})
    with pytest.raises(ValueError, match=rf"wrong\.safetensors' is not a HunyuanVideo VAE: it is .*{message}"):
        load_vae(path)


def test_the_vae_reads_every_container_of_the_weight_pipeline(vae, tmp_path):
    """GGUF, a diffusers folder and a .pt through the same readers as the DiT: the same weights."""
    from hunyuanvideo_pack.hunyuan_model.tiny.formats import write_gguf_file, write_model_folder

    state = vae.state_dict()
    folder = write_model_folder(tmp_path / "vae_folder", {"diffusion_pytorch_model.safetensors": state}, {})
    torch.save({"state_dict": state}, tmp_path / "vae.pt")
    paths = [folder, tmp_path / "vae.pt", write_gguf_file(state, tmp_path / "vae.gguf", "hyvae", "F16")]
    for path in paths:
        loaded = load_vae(path, dtype=torch.float32).state_dict()
        tolerance = 1e-3 if path.suffix == ".gguf" else 0  # matrices stored F16 there
        assert all((loaded[k] - v).abs().max() <= tolerance * max(1.0, v.abs().max()) for k, v in state.items()), path


def test_a_vae_of_another_size_is_refused(vae, tmp_path):
    state = dict(vae.state_dict())
    state["decoder.conv_in.conv.weight"] = torch.zeros(32, 32, 3, 3, 3)
    with pytest.raises(ValueError, match="32-channel latents; HunyuanVideo's has 16"):
        load_vae(_save(tmp_path, "v15.safetensors", state))


# ---------------------------------------------------------------------------------------------
# Nodes


@pytest.fixture
def loaded(vae, models_dir):
    save_file(vae.state_dict(), models_dir / "vae" / "tiny_vae.safetensors")
    assert "tiny_vae.safetensors" in HunyuanVideoVAELoader.INPUT_TYPES()["required"]["vae_name"][0]
    (model,) = HunyuanVideoVAELoader().load("tiny_vae.safetensors", "fp32")
    return model


MANUAL = dict(tiling="manual", tile_size=32, overlap=16, temporal_size=12, temporal_overlap=4)


def test_empty_latent_round_trips_through_the_nodes(loaded):
    (empty,) = HunyuanVideoEmptyLatent().generate(width=64, height=32, frames=9, batch=1)
    (images,) = HunyuanVideoVAEDecode().decode(loaded, empty, "auto", 256, 64, 64, 16)
    assert images.shape == (9, 32, 64, 3) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    (encoded,) = HunyuanVideoVAEEncode().encode(loaded, images, "auto", 256, 64, 64, 16)
    assert set(encoded) == {"samples"}
    assert encoded["samples"].shape == empty["samples"].shape == (1, 16, 3, 4, 8)


def test_decode_node_reports_progress_per_tile_and_stops_when_cancelled(loaded, monkeypatch):
    reports, run = [], []
    original = loaded.decode_tile

    def counting(z):
        run.append(1)
        if len(run) == 2:
            comfy_env.request_cancel()
        return original(z)

    class Recorder:
        def __init__(self, total, description):
            self.total = total

        def update(self, done):
            reports.append((done, self.total))
            comfy_env.check_cancel()

        def close(self):
            pass

    monkeypatch.setattr(comfy_env, "Progress", Recorder)
    monkeypatch.setattr(loaded, "decode_tile", counting)
    with pytest.raises(comfy_env.Cancelled):
        HunyuanVideoVAEDecode().decode(loaded, {"samples": latent(TILED_LATENT_SHAPE)}, **MANUAL)
    assert reports == [(0, 18), (1, 18), (2, 18)]  # 2 time x 3 x 3 tiles; cancelled after the second
    assert len(run) == 2


def test_decode_node_manual_tiling_equals_the_api_and_batches_frames(loaded):
    z = latent((2, 16, 2, 3, 3))
    (images,) = HunyuanVideoVAEDecode().decode(loaded, {"samples": z}, **MANUAL)
    assert images.shape == (10, 24, 24, 3)
    torch.testing.assert_close(images, decode(loaded, z, TILING).reshape(10, 24, 24, 3), rtol=0, atol=0)


def test_node_validation_explains_bad_tile_sizes():
    assert HunyuanVideoVAEDecode.VALIDATE_INPUTS("manual", 256, 64, 64, 16) is True
    assert HunyuanVideoVAEDecode.VALIDATE_INPUTS("auto", 64, 64, 64, 16) is True  # sizes unused
    error = HunyuanVideoVAEEncode.VALIDATE_INPUTS("manual", 64, 64, 64, 16)
    assert "overlap=64 must be at least 0 and smaller than tile_size=64" in error
