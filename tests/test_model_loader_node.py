"""HunyuanVideo Model Loader: lists the model folders, loads any format into a TransformerHandle."""

from __future__ import annotations

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.checkpoint import MissingScaleMapError, WrongModelError
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle, module_bytes
from hunyuanvideo_pack.hunyuan_model.quant import CastLinear, GGUFLinear
from hunyuanvideo_pack.hunyuan_model.tiny import dit_files as tiny
from hunyuanvideo_pack.nodes import comfy_env
from hunyuanvideo_pack.nodes.model_loader import HunyuanVideoModelLoader

NODE = HunyuanVideoModelLoader()
DEFAULTS = dict(weight_storage="as_stored", base_precision="bf16", attention="sdpa", load_device="offload_device")


@pytest.fixture(scope="module")
def state():
    return tiny.release_state_dict(tiny.random_transformer(seed=5))


@pytest.fixture(scope="module")
def models(tmp_path_factory, state):
    """A models folder holding the files users arrive with, configured as the standalone models folder."""
    root = tmp_path_factory.mktemp("comfy") / "models"
    for folders in comfy_env.MODEL_FOLDERS.values():
        for folder in folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
    unet, diffusion = root / "unet", root / "diffusion_models"
    tiny.write_safetensors(state, diffusion / "hunyuan_video_t2v_720p_bf16.safetensors", "model.diffusion_model.")
    tiny.write_fp8_release(state, diffusion / "tencent" / "mp_rank_00_model_states_fp8.pt")
    tiny.write_gguf(state, unet / "hunyuan-video-t2v-720p-Q4_0.gguf", "Q4_0")
    tiny.write_diffusers(state, diffusion / "HunyuanVideo-diffusers")
    previous = comfy_env.models_directory(), comfy_env.output_directory()
    comfy_env.configure(models_dir=root, output_dir=root.parent / "output")
    yield root
    comfy_env.configure(*previous)


def test_the_lists_show_every_format_and_the_scale_maps(models):
    inputs = HunyuanVideoModelLoader.INPUT_TYPES()
    names = inputs["required"]["model_name"][0]
    assert names == [
        "hunyuan-video-t2v-720p-Q4_0.gguf",
        "hunyuan_video_t2v_720p_bf16.safetensors",
        "HunyuanVideo-diffusers",
        "tencent/mp_rank_00_model_states_fp8.pt",
        "tencent/mp_rank_00_model_states_fp8_map.pt",
    ]
    assert inputs["required"]["model_name"][1]["default"] == "hunyuan-video-t2v-720p-Q4_0.gguf"
    # Maps only: not the transformers themselves, nor the diffusers folder's shards.
    assert inputs["optional"]["scale_map"][0] == ["auto", "tencent/mp_rank_00_model_states_fp8_map.pt"]
    assert inputs["required"]["base_precision"][0] == ["bf16", "fp32"]  # fp16 gives black frames
    assert inputs["required"]["weight_storage"][0] == [
        "as_stored",
        "fp8_e4m3fn",
        "fp8_e4m3fn_scaled",
        "fp8_e4m3fn_fast",
    ]


@pytest.mark.parametrize(
    "name, storage, layer",
    [
        ("tencent/mp_rank_00_model_states_fp8.pt", "as_stored", CastLinear),
        ("hunyuan-video-t2v-720p-Q4_0.gguf", "as_stored", GGUFLinear),
        ("HunyuanVideo-diffusers", "fp8_e4m3fn_scaled", CastLinear),
    ],
)
def test_any_format_becomes_a_handle_for_the_sampler(models, name, storage, layer):
    (handle,) = NODE.load(name, **{**DEFAULTS, "weight_storage": storage})
    assert isinstance(handle, TransformerHandle)
    assert handle.compute_device == comfy_env.compute_device()
    assert handle.offload_device == comfy_env.offload_device()
    assert handle.after_run is comfy_env.track_model  # ComfyUI learns what stays on its GPU after a run
    assert type(handle.model.single_blocks[1].linear2) is layer
    assert handle.model.final_layer.linear.weight.dtype == torch.bfloat16
    assert name.rsplit("/", 1)[-1].split(".")[0] in handle.description and storage in handle.description
    with handle.running((1, 16, 1, 4, 4)) as model:
        out = model(torch.randn(1, 16, 1, 4, 4), 500.0, torch.randn(1, 5, 64), None, torch.randn(1, 128), guidance=6.0)
    assert out.shape == (1, 16, 1, 4, 4) and torch.isfinite(out).all()


def test_main_device_makes_room_for_the_weights_first(models, monkeypatch):
    asked = []
    monkeypatch.setattr(comfy_env, "make_room", lambda size, device: asked.append((size, device)))
    (handle,) = NODE.load("hunyuan_video_t2v_720p_bf16.safetensors", **{**DEFAULTS, "load_device": "main_device"})
    assert asked == [(module_bytes(handle.model), comfy_env.compute_device())]


def test_scale_maps_are_found_or_chosen_and_missing_ones_refused(models, state):
    fp8 = "tencent/mp_rank_00_model_states_fp8.pt"
    (handle,) = NODE.load(fp8, **DEFAULTS, scale_map="tencent/mp_rank_00_model_states_fp8_map.pt")
    assert "scale map 'mp_rank_00_model_states_fp8_map.pt'" in handle.description
    weights, map_path = tiny.write_fp8_release(state, models / "unet" / "model_fp8.pt")
    map_path.unlink()
    try:
        with pytest.raises(MissingScaleMapError, match="model_fp8_map.pt"):
            NODE.load("model_fp8.pt", **DEFAULTS)
    finally:
        weights.unlink()


def test_wrong_choices_are_refused_before_loading(models, monkeypatch):
    with pytest.raises(
        WrongModelError,
        match=r"is not a HunyuanVideo transformer: it is an FP8 scale map .*; choose it as scale_map, with Tencent",
    ):
        NODE.load("tencent/mp_rank_00_model_states_fp8_map.pt", **DEFAULTS)
    monkeypatch.setattr(comfy_env, "compute_device", lambda: torch.device("mps"))
    with pytest.raises(RuntimeError, match="fp8_e4m3fn_fast is not available"):
        NODE.load("hunyuan_video_t2v_720p_bf16.safetensors", **{**DEFAULTS, "weight_storage": "fp8_e4m3fn_fast"})


def test_loading_can_be_cancelled(models, monkeypatch):
    calls = []

    def cancel_on_third_update():
        calls.append(1)
        if len(calls) == 3:
            raise comfy_env.Cancelled("cancelled by request")

    monkeypatch.setattr(comfy_env, "check_cancel", cancel_on_third_update)
    with pytest.raises(comfy_env.Cancelled):
        NODE.load("hunyuan_video_t2v_720p_bf16.safetensors", **DEFAULTS)
    assert len(calls) == 3
