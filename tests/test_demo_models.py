"""The CPU demo: tiny stand-ins for every model file the workflows name, and when the runner uses them."""

import json

import pytest
import torch
from safetensors import safe_open

from hunyuanvideo_pack.hunyuan_model.dit import open_transformer
from hunyuanvideo_pack.hunyuan_model.text_encoder.templates import IMAGE, VIDEO, crop_start
from hunyuanvideo_pack.hunyuan_model.text_encoder.tokenizers import check_tokenizer, load_tokenizer
from hunyuanvideo_pack.hunyuan_model.tiny import text_encoder_files as tiny
from hunyuanvideo_pack.hunyuan_model.tiny.dit_files import demo_config
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS, demo_models

GRAPH = {
    "1": {"class_type": "HunyuanVideoModelLoader", "inputs": {"model_name": "hunyuan-video-t2v-720p-Q4_0.gguf"}},
    "2": {
        "class_type": "HunyuanVideoTextEncoderLoader",
        "inputs": {"llm": "llava_llama3_fp16.safetensors", "clip": "clip_l.safetensors"},
    },
    "3": {"class_type": "HunyuanVideoVAELoader", "inputs": {"vae_name": "hunyuan_video_vae_bf16.safetensors"}},
    "4": {"class_type": "HunyuanVideoEmptyLatent", "inputs": {"width": 848, "height": 480, "frames": 73}},
    "5": {"class_type": "HunyuanVideoSampler", "inputs": {"model": ["1", 0], "steps": 30}},
}


@pytest.mark.parametrize("kind", ["llm", "clip"])
def test_stand_in_tokenizers_pass_the_loaders_checks_and_frame_the_prompt(tmp_path, kind):
    tokenizer = load_tokenizer(tiny.write_byte_tokenizer(tmp_path / kind, kind), kind)
    check_tokenizer(tokenizer, kind, 49408, "the stand-in")  # fits the smaller (CLIP) vocabulary too
    ids = tokenizer("a cat").input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    if kind == "llm":
        assert tokens == ["<|begin_of_text|>", "a", "Ġ", "c", "a", "t"]
        # the template crop finds the user header: everything before the prompt is cut
        prefix = tokenizer.convert_ids_to_tokens(tokenizer(VIDEO.prefix).input_ids)
        assert prefix[-8:] == ["<|start_header_id|>", *"user", "<|end_header_id|>", "Ċ", "Ċ"]
        # one token per byte, each special token one, and the BOS
        specials = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
        plain = VIDEO.prefix.encode()
        for special in specials:
            plain = plain.replace(special.encode(), b"")
        assert crop_start(tokenizer, VIDEO) == len(prefix) == len(plain) + sum(map(VIDEO.prefix.count, specials)) + 1
        assert crop_start(tokenizer, IMAGE) == len(tokenizer(IMAGE.prefix).input_ids)
    else:
        assert tokens == ["<|startoftext|>", "a", "Ġ", "c", "a", "t", "<|endoftext|>"]
        assert ids[-1] == max(tokenizer.get_vocab().values())  # CLIP pools at the highest id


def test_every_demo_file_is_written_in_the_format_its_name_stands_for(demo_models_dir):
    root = demo_models_dir
    block_storage = {}
    for kind, name in demo_models.DEMO_FILES:
        if kind == "diffusion_models":
            source = open_transformer(root / kind / name)
            assert source.config == demo_config()
            block_storage[name] = source.reader.infos()["double_blocks.0.img_mlp.fc1.weight"].storage
    assert block_storage == {
        "hunyuan_video_t2v_720p_bf16.safetensors": "bfloat16",
        "hunyuan_video_720_cfgdistill_fp8_e4m3fn.safetensors": "float8_e4m3fn",
        "hunyuan-video-t2v-720p-Q4_0.gguf": "Q4_0",
    }
    with safe_open(root / "text_encoders" / "llava_llama3_fp8_scaled.safetensors", "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.up_proj.weight").dtype == torch.float8_e4m3fn
        assert "scaled_fp8" in f.keys()
    with safe_open(root / "vae" / "hunyuan_video_vae_bf16.safetensors", "pt") as f:
        assert f.get_tensor("decoder.conv_in.conv.weight").dtype == torch.bfloat16
    assert json.loads((root / "text_encoders" / "clip_l_tokenizer" / "tokenizer_config.json").read_text())


def test_a_demo_runs_only_when_no_named_model_exists_and_each_has_a_stand_in(models_dir):
    plan = demo_models.demo_plan(GRAPH)
    assert plan.files == [
        ("diffusion_models", "hunyuan-video-t2v-720p-Q4_0.gguf"),
        ("text_encoders", "llava_llama3_fp16.safetensors"),
        ("text_encoders", "clip_l.safetensors"),
        ("vae", "hunyuan_video_vae_bf16.safetensors"),
    ]
    assert plan.overrides == ["4.width=256", "4.height=144", "4.frames=25", "5.steps=4"]

    unknown = json.loads(json.dumps(GRAPH))
    unknown["3"]["inputs"]["vae_name"] = "my_vae.safetensors"
    assert demo_models.demo_plan(unknown) is None  # a file the demo cannot stand in for: the normal error
    (models_dir / "vae" / "hunyuan_video_vae_bf16.safetensors").write_bytes(b"")
    assert demo_models.demo_plan(GRAPH) is None  # real weights present: no demo
    assert set(demo_models.MODEL_INPUTS) <= {(c, i) for c in NODE_CLASS_MAPPINGS for i in _inputs(c)}


def _inputs(class_type):
    spec = NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    return [*spec.get("required", {}), *spec.get("optional", {})]
