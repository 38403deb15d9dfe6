"""The shared workflows in workflows/: both forms of each describe one graph, with the issue's settings
and the file names users have, and each runs headless on tiny stand-in models."""

import json
import logging

import av
import pytest

from conftest import PACK_DIR
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS, comfy_env, demo_models
from hunyuanvideo_pack.nodes.headless import main, run_graph, set_inputs
from hunyuanvideo_pack.nodes.workflow_format import VIRTUAL_TYPES, ui_to_api, widgets

FOLDER = PACK_DIR / "workflows"
NAMES = ("text_to_video", "low_vram", "gguf", "long_video")
SMALL = {"width": 64, "height": 48, "frames": 5}


def read(name):
    return json.loads((FOLDER / f"{name}.json").read_text()), json.loads((FOLDER / f"{name}_api.json").read_text())


def by_type(api, class_type):
    (node,) = [n["inputs"] for n in api.values() if n["class_type"] == class_type]
    return node


def test_every_workflow_comes_in_ui_and_api_form_and_both_describe_the_same_graph():
    files = sorted(path.name for path in FOLDER.glob("*.json"))
    assert files == sorted(f"{name}{suffix}.json" for name in NAMES for suffix in ("", "_api"))
    for name in NAMES:
        ui, api = read(name)
        assert ui_to_api(ui, NODE_CLASS_MAPPINGS) == api, name


@pytest.mark.parametrize("name", NAMES)
def test_ui_forms_are_what_comfyui_saves_links_typed_and_widgets_in_order(name):
    ui, api = read(name)
    nodes = {node["id"]: node for node in ui["nodes"]}
    assert {node["type"] for node in nodes.values()} <= set(NODE_CLASS_MAPPINGS) | set(VIRTUAL_TYPES)
    assert ui["last_node_id"] == max(nodes) and ui["last_link_id"] == max(link[0] for link in ui["links"])
    for link_id, source, slot, target, target_slot, kind in ui["links"]:
        assert NODE_CLASS_MAPPINGS[nodes[source]["type"]].RETURN_TYPES[slot] == kind
        assert nodes[source]["outputs"][slot]["links"].count(link_id) == 1
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
        assert nodes[target]["inputs"][target_slot]["type"] == kind
    for node in nodes.values():
        if node["type"] in NODE_CLASS_MAPPINGS:
            slots = widgets(NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES())
            assert len(node["widgets_values"]) == sum(1 + w.extra_slots for w in slots), node["type"]
    sampler = next(n for n in nodes.values() if n["type"] == "HunyuanVideoSampler")
    assert sampler["widgets_values"][1] == "fixed"  # the seed's control_after_generate slot


@pytest.mark.parametrize("name", NAMES)
def test_workflows_have_the_issue_settings_and_the_file_names_users_have(name):
    _, api = read(name)
    size = (
        {"width": 512, "height": 288, "frames": 261}
        if name == "long_video"
        else {"width": 848, "height": 480, "frames": 73}
    )
    assert by_type(api, "HunyuanVideoEmptyLatent") == {**size, "batch": 1}
    sampler = by_type(api, "HunyuanVideoSampler")
    assert (sampler["steps"], sampler["shift"], sampler["embedded_guidance"], sampler["denoise"]) == (30, 7, 6, 1)
    assert all(file in demo_models.DEMO_FILES for file in demo_models.model_files(api))
    loader, text = by_type(api, "HunyuanVideoModelLoader"), by_type(api, "HunyuanVideoTextEncoderLoader")
    decode = by_type(api, "HunyuanVideoVAEDecode")
    assert (text["llm"], text["clip"]) == ("llava_llama3_fp8_scaled.safetensors", "clip_l.safetensors")
    if name == "text_to_video":  # Comfy-Org's bf16 file, held as scaled FP8 to fit 24 GB
        assert (loader["model_name"], loader["weight_storage"]) == (
            "hunyuan_video_t2v_720p_bf16.safetensors",
            "fp8_e4m3fn_scaled",
        )
    elif name == "long_video":  # low_vram's graph with RIFLEx between block swap and the sampler
        assert loader["model_name"] == "hunyuan_video_720_cfgdistill_fp8_e4m3fn.safetensors"
        long_video = by_type(api, "HunyuanVideoLongVideo")
        assert (long_video["model"], long_video["riflex"], long_video["riflex_k"]) == (["10", 0], True, 0)
        assert long_video["context_frames"] == 0 and by_type(api, "HunyuanVideoSampler")["model"] == ["11", 0]
    elif name == "low_vram":  # kijai's FP8 file swapped as needed, encoders freed after use, small decode tiles
        assert loader["model_name"] == "hunyuan_video_720_cfgdistill_fp8_e4m3fn.safetensors"
        swap = by_type(api, "HunyuanVideoBlockSwap")
        assert (swap["mode"], swap["model"], swap["prefetch"]) == ("auto", ["1", 0], True)
        assert by_type(api, "HunyuanVideoSampler")["model"] == ["10", 0]
        assert text["after_encoding"] == "free" and text["llm_weights"] == "fp8_e4m3fn"
        assert (decode["tiling"], decode["tile_size"], decode["temporal_size"]) == ("manual", 256, 32)
    else:
        assert loader["model_name"].endswith(".gguf") and loader["weight_storage"] == "as_stored"


@pytest.mark.parametrize("name", NAMES)
def test_every_workflow_runs_headless_on_tiny_models(demo_models_dir, models_dir, tmp_path, name):
    comfy_env.configure(models_dir=demo_models_dir, output_dir=tmp_path)
    _, api = read(name)
    set_inputs(api, demo_models.shrink_overrides(api, SMALL, steps=1), NODE_CLASS_MAPPINGS)
    result = run_graph(api, NODE_CLASS_MAPPINGS, report=lambda line: None)
    assert result.files == [tmp_path / "HunyuanVideo" / f"{name}_00001_.mp4"]
    with av.open(str(result.files[0])) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3)
    assert frames[0].std() > 1  # decoded noise, not a blank frame


def test_without_the_weights_the_readme_command_runs_a_cpu_demo(models_dir, tmp_path, caplog):
    workflow = str(FOLDER / "text_to_video.json")  # the UI form: the same run as the API form
    small = [f"--set=4.{key}={value}" for key, value in SMALL.items()] + ["--set=5.steps=1"]
    with caplog.at_level(logging.INFO, logger="HunyuanVideo"):
        assert main([workflow, "--models-dir", str(models_dir), "--output-dir", str(tmp_path), *small]) == 0
    log = caplog.text
    assert "none of the model files this workflow names are in" in log and "the result is noise" in log
    assert "--set 4.width=256 --set 4.height=144 --set 4.frames=25 --set 5.steps=4" in log
    assert "vae/hunyuan_video_vae_bf16.safetensors" in log  # the files real generation needs are named
    with av.open(str(tmp_path / "HunyuanVideo" / "text_to_video_00001_.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.frames, stream.width, stream.height) == (5, 64, 48)  # the user's --set wins
    caplog.clear()
    assert main([workflow, "--models-dir", str(models_dir), "--no-demo"]) == 2
    assert "is not one of the choices" in caplog.text
