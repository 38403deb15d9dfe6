"""load_transformer: every checkpoint format gives the bf16 original's output within its bound, and
every wrong input is refused with a message that says what the file is."""

from __future__ import annotations

import gc

import pytest
import torch
from checkpoint_files import write_gguf as write_raw_gguf
from torch import nn

from hunyuanvideo_pack.hunyuan_model.checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    MissingScaleMapError,
    UnsafeCheckpointError,
    WrongModelError,
)
from hunyuanvideo_pack.hunyuan_model.dit import load_transformer, open_transformer
from hunyuanvideo_pack.hunyuan_model.handle import module_bytes
from hunyuanvideo_pack.hunyuan_model.quant import CastLinear, GGUFLinear, ScaledMMLinear
from hunyuanvideo_pack.hunyuan_model.tiny import dit_files as tiny

# Relative L2 error of the DiT's output against the original (float32 compute, weights with bf16
# values), per format. Measured on this tiny random DiT, whose random weights amplify weight error
# through its blocks: exact formats 0 (fp16 storage 2.5e-7), FP8 with per-layer scales 0.042, plain
# FP8 casts 0.044 (e4m3fn) and 0.084 (e5m2), FP8 matmuls 0.054, GGUF Q8_0 0.013, Q5_1 0.096,
# Q4_0 0.23 (GGUF files quantize the embedders too), bf16 compute 0.008.
BOUNDS = {
    "exact": 1e-6,
    "fp16": 1e-5,
    "fp8": 0.06,
    "e5m2": 0.12,
    "fp8_fast": 0.08,
    "Q8_0": 0.03,
    "Q5_1": 0.15,
    "Q4_0": 0.35,
    "bf16": 0.015,
}


@pytest.fixture(scope="module")
def reference():
    return tiny.random_transformer(seed=3)


@pytest.fixture(scope="module")
def state(reference):
    return tiny.release_state_dict(reference)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return dict(
        latents=torch.randn(1, 16, 2, 4, 4, generator=g),
        timestep=torch.tensor([700.0]),
        text_states=torch.randn(1, 7, 64, generator=g),
        text_mask=torch.ones(1, 7, dtype=torch.long),
        pooled_text=torch.randn(1, 128, generator=g),
        guidance=6.0,
    )


@pytest.fixture(scope="module")
def expected(reference, inputs):
    return reference(**inputs)


def relative_error(model, inputs, expected) -> float:
    out = model(**inputs).float()
    return ((out - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="module")
def files(tmp_path_factory, state):
    """One random tiny DiT written in every format, named as the released files are."""
    d = tmp_path_factory.mktemp("models")
    fp8_release, _ = tiny.write_fp8_release(state, d / "fp8" / "mp_rank_00_model_states_fp8.pt")
    return {
        "tencent_pt": tiny.write_tencent_pt(state, d / "mp_rank_00_model_states.pt"),
        "comfy": tiny.write_safetensors(state, d / "hunyuan_video_t2v_720p_bf16.safetensors", "model.diffusion_model."),
        "diffusion_model_prefix": tiny.write_safetensors(state, d / "prefixed.safetensors", "diffusion_model."),
        "model_prefix": tiny.write_safetensors(state, d / "model_prefixed.safetensors", "model."),
        "bare": tiny.write_safetensors(state, d / "hunyuan_video_720_bf16.safetensors"),
        "fp16": tiny.write_safetensors(state, d / "fp16.safetensors", dtype=torch.float16),
        "fp32": tiny.write_safetensors(state, d / "fp32.safetensors", dtype=torch.float32),
        "diffusers_folder": tiny.write_diffusers(state, d / "HunyuanVideo" / "transformer", shards=3),
        "diffusers_file": tiny.write_diffusers(state, d / "hunyuan_video_diffusers.safetensors"),
        "fp8_release": fp8_release,
        "scaled_fp8": tiny.write_scaled_fp8(state, d / "hunyuan_video_t2v_720p_fp8_scaled.safetensors"),
        "fp8_e4m3fn": tiny.write_fp8_cast(state, d / "hunyuan_video_720_cfgdistill_fp8_e4m3fn.safetensors"),
        "fp8_e5m2": tiny.write_fp8_cast(state, d / "e5m2.safetensors", torch.float8_e5m2),
        "gguf_BF16": tiny.write_gguf(state, d / "hunyuan-video-t2v-720p-BF16.gguf", "BF16"),
        "gguf_Q8_0": tiny.write_gguf(state, d / "hunyuan-video-t2v-720p-Q8_0.gguf", "Q8_0"),
        "gguf_Q5_1": tiny.write_gguf(state, d / "hunyuan-video-t2v-720p-Q5_1.gguf", "Q5_1"),
        "gguf_Q4_0": tiny.write_gguf(state, d / "hunyuan-video-t2v-720p-Q4_0.gguf", "Q4_0"),
    }


# (file, weight storage, bound, module holding a block Linear's weight)
FORMATS = [
    ("tencent_pt", "as_stored", "exact", nn.Linear),
    ("comfy", "as_stored", "exact", nn.Linear),
    ("diffusion_model_prefix", "as_stored", "exact", nn.Linear),
    ("model_prefix", "as_stored", "exact", nn.Linear),
    ("bare", "as_stored", "exact", nn.Linear),
    ("fp16", "as_stored", "fp16", nn.Linear),
    ("fp32", "as_stored", "exact", nn.Linear),
    ("diffusers_folder", "as_stored", "exact", nn.Linear),
    ("diffusers_file", "as_stored", "exact", nn.Linear),
    ("fp8_release", "as_stored", "fp8", CastLinear),
    ("scaled_fp8", "as_stored", "fp8", CastLinear),
    ("fp8_e4m3fn", "as_stored", "fp8", CastLinear),
    ("fp8_e5m2", "as_stored", "e5m2", CastLinear),
    ("bare", "fp8_e4m3fn", "fp8", CastLinear),
    ("bare", "fp8_e4m3fn_scaled", "fp8", CastLinear),
    ("bare", "fp8_e4m3fn_fast", "fp8_fast", ScaledMMLinear),  # slow on CPU (9 s): torch._scaled_mm is a reference loop
    ("gguf_BF16", "as_stored", "exact", nn.Linear),
    ("gguf_Q8_0", "as_stored", "Q8_0", GGUFLinear),
    ("gguf_Q5_1", "as_stored", "Q5_1", GGUFLinear),
    ("gguf_Q4_0", "as_stored", "Q4_0", GGUFLinear),
]


@pytest.mark.parametrize("name, storage, bound, block_linear", FORMATS)
def test_every_format_gives_the_original_output(files, inputs, expected, name, storage, bound, block_linear):
    source = open_transformer(files[name])
    model = source.load(storage, torch.float32)

    assert type(model.double_blocks[1].txt_mlp.fc2) is block_linear
    assert type(model.single_blocks[0].linear1) is block_linear
    # The rule: norms, biases, embedders and the final layer stay in the base precision.
    for kept in (model.txt_in.input_embedder, model.final_layer.linear, model.double_blocks[0].img_attn_qkv):
        assert kept.bias.dtype == torch.float32
    assert type(model.final_layer.linear) is nn.Linear and model.final_layer.linear.weight.dtype == torch.float32
    assert model.img_in.proj.weight.dtype == model.double_blocks[0].img_attn_q_norm.weight.dtype == torch.float32
    assert relative_error(model, inputs, expected) <= BOUNDS[bound]
    assert source.weight_bytes(storage, torch.float32) == pytest.approx(module_bytes(model), rel=1e-3)


def test_the_scale_map_is_what_makes_fp8_weights_right(files, state, inputs, expected):
    model = load_transformer(files["fp8_release"], base_dtype=torch.float32)
    assert model.double_blocks[0].img_attn_qkv.scale is not None
    unscaled = load_transformer(files["fp8_e4m3fn"], base_dtype=torch.float32)
    # The same FP8 values with their scales dropped: what loading Tencent's file without its map gives.
    weights, _ = tiny.fp8_release_tensors(state)
    for name, module in unscaled.named_modules():
        if isinstance(module, CastLinear):
            module.weight = nn.Parameter(weights[f"{name}.weight"], requires_grad=False)
    assert relative_error(unscaled, inputs, expected) > 10 * BOUNDS["fp8"]


def test_bf16_compute_and_storage(files, inputs, expected):
    model = load_transformer(files["tencent_pt"])  # final_layer.linear is float32 in the file
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert relative_error(model, inputs, expected) <= BOUNDS["bf16"]


@pytest.mark.parametrize("to_float32", [lambda m: m.float(), lambda m: m.to(torch.float32)])
def test_a_loaded_model_moved_to_float32_computes_in_float32(files, inputs, expected, to_float32):
    """A user's ``.float()`` / ``.to(torch.float32)``: the compute dtype follows the weights."""
    model = to_float32(load_transformer(files["bare"]))
    assert model.compute_dtype == torch.float32
    assert model(**inputs).dtype == torch.float32
    assert relative_error(model, inputs, expected) <= BOUNDS["exact"]  # the file holds bf16 values: exact in float32


def test_ema_weights_on_request(tmp_path, files, reference, state, inputs, expected):
    other = tiny.release_state_dict(tiny.random_transformer(reference.config, seed=4))
    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": state, "ema": other}, path)
    assert relative_error(load_transformer(path, base_dtype=torch.float32), inputs, expected) <= BOUNDS["exact"]
    ema = load_transformer(path, base_dtype=torch.float32, load_key="ema")
    assert "state dict under 'ema'" in open_transformer(path, load_key="ema").description
    assert relative_error(ema, inputs, expected) > 0.1
    with pytest.raises(CheckpointError, match="load_key 'ema' picks an entry of a PyTorch .pt file"):
        open_transformer(files["bare"], load_key="ema")


def test_loads_to_a_device_and_outlives_its_reader(files, inputs, expected):
    model = load_transformer(files["comfy"], base_dtype=torch.float32, device="cpu")
    gc.collect()  # nothing holds the reader now: the weights keep their file mapping alive themselves
    assert relative_error(model, inputs, expected) <= BOUNDS["exact"]


def test_progress_counts_every_tensor_and_can_cancel(files, state):
    seen = []
    load_transformer(files["bare"], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, len(state)) for i in range(1, len(state) + 1)]

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_transformer(files["bare"], progress=cancel)


# --- wrong inputs --------------------------------------------------------------------------------------


def test_fp8_weights_without_their_map_are_refused_with_the_searched_paths(tmp_path, state):
    path, map_path = tiny.write_fp8_release(state, tmp_path / "mp_rank_00_model_states_fp8.pt")
    map_path.unlink()
    with pytest.raises(MissingScaleMapError, match="gives noise") as caught:
        load_transformer(path)
    assert str(map_path) in str(caught.value) and str(tmp_path / "fp8_map.safetensors") in str(caught.value)


def test_an_explicit_map_is_used_and_a_wrong_one_refused(tmp_path, files, state, inputs, expected):
    path, map_path = tiny.write_fp8_release(state, tmp_path / "weights.pt")
    elsewhere = map_path.rename(tmp_path / "maps_scales.pt")
    model = load_transformer(path, scale_map=elsewhere, base_dtype=torch.float32)
    assert relative_error(model, inputs, expected) <= BOUNDS["fp8"]
    with pytest.raises(CheckpointError, match="holds no FP8 weights that need one"):
        open_transformer(files["bare"], scale_map=elsewhere)
    with pytest.raises(CheckpointError, match="is not an FP8 scale map"):
        open_transformer(path, scale_map=files["tencent_pt"])


def write_keys(path, keys, prefix=""):
    return tiny.write_safetensors({key: torch.zeros(4, 4) for key in keys}, path, prefix)


WRONG_FILES = [
    (
        [
            "decoder.conv_in.conv.weight",
            "encoder.conv_in.conv.weight",
            "decoder.up_blocks.0.resnets.0.conv1.conv.weight",
        ],
        "",
        r"is not a HunyuanVideo transformer: it is a HunyuanVideo VAE.*HunyuanVideo VAE Loader \(HunyuanVideoVAELoader\)",
    ),
    (
        ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "lm_head.weight"],
        "",
        r"is not a HunyuanVideo transformer: it is a Llama language model .*HunyuanVideoTextEncoderLoader",
    ),
    (  # every key under "model.": the reader strips it, the check still sees a text encoder
        ["embed_tokens.weight", "layers.0.self_attn.q_proj.weight", "norm.weight"],
        "model.",
        r"is not a HunyuanVideo transformer: it is a Llama language model",
    ),
    (
        ["text_model.embeddings.token_embedding.weight", "text_model.encoder.layers.0.self_attn.q_proj.weight"],
        "",
        r"is not a HunyuanVideo transformer: it is a CLIP text encoder",
    ),
    (
        ["double_blocks.0.img_attn_qkv.lora_A.weight", "double_blocks.0.img_attn_qkv.lora_B.weight"],
        "diffusion_model.",
        r"is not a HunyuanVideo transformer: it is a LoRA",
    ),
    (
        ["img_in.weight", "double_blocks.0.img_attn.qkv.weight"],
        "model.diffusion_model.",
        r"is not a HunyuanVideo transformer: it is a FLUX image model",
    ),
    (
        ["patch_embedding.weight", "blocks.0.self_attn.q.weight"],
        "",
        r"is not a HunyuanVideo transformer: it is a Wan video model",
    ),
]


@pytest.mark.parametrize("keys, prefix, message", WRONG_FILES)
def test_other_models_are_named(tmp_path, keys, prefix, message):
    path = write_keys(tmp_path / "picked_by_mistake.safetensors", keys, prefix)
    with pytest.raises(WrongModelError, match=message):
        load_transformer(path)


def test_a_gguf_of_another_family_is_named(tmp_path):
    import numpy as np

    path = write_raw_gguf(tmp_path / "wan2.1-t2v-14b-Q8_0.gguf", {"blocks.0.w": np.zeros(4, np.float32)}, "wan")
    with pytest.raises(WrongModelError, match="architecture 'wan', a Wan video model"):
        load_transformer(path)


def test_an_image_to_video_transformer_is_refused(tmp_path, state):
    i2v = dict(state, **{"img_in.proj.weight": torch.zeros(256, 33, 1, 2, 2)})
    with pytest.raises(WrongModelError, match="takes 33 latent channels"):
        open_transformer(tiny.write_safetensors(i2v, tmp_path / "hunyuan_video_I2V.safetensors"))


def test_an_unknown_key_layout_lists_what_differs(tmp_path, state):
    odd = dict(state, **{"double_blocks.0.img_attn_extra.weight": torch.zeros(2)})
    del odd["single_blocks.1.linear2.bias"]
    with pytest.raises(CheckpointError) as caught:
        open_transformer(tiny.write_safetensors(odd, tmp_path / "odd.safetensors"))
    message = str(caught.value)
    assert "safetensors file 'odd.safetensors'" in message
    assert "1 unexpected keys, first: ['double_blocks.0.img_attn_extra.weight']" in message
    assert "1 missing keys, first: ['single_blocks.1.linear2.bias']" in message
    nothing_known = write_keys(tmp_path / "other.safetensors", ["encoder.weight", "head.bias"])
    with pytest.raises(
        CheckpointError,
        match=r"'other.safetensors': not a HunyuanVideo DiT state dict: key 'img_in.proj.weight' is missing",
    ):
        open_transformer(nothing_known)


def test_damaged_and_unsafe_files_are_named(tmp_path, files):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(files["comfy"].read_bytes()[:-1000])
    with pytest.raises(CorruptCheckpointError, match=r"'.*truncated.safetensors' is truncated: tensor '.*' ends at"):
        load_transformer(truncated)
    cut_gguf = tmp_path / "cut.gguf"
    cut_gguf.write_bytes(files["gguf_Q8_0"].read_bytes()[:-5000])
    with pytest.raises(CorruptCheckpointError, match="cut.gguf' is truncated: tensor"):
        load_transformer(cut_gguf)
    torch.save({"module": {"x": torch.zeros(1)}, "note": Unpicklable()}, tmp_path / "code.pt")
    with pytest.raises(UnsafeCheckpointError, match="needs code to load"):
        load_transformer(tmp_path / "code.pt")


class Unpicklable:
    pass


def test_unusable_settings_are_refused_before_loading(files):
    with pytest.raises(ValueError, match="black frames"):
        load_transformer(files["bare"], base_dtype=torch.float16)
    with pytest.raises(CheckpointError, match=r"quantized \(Q8_0\); weight storage fp8_e4m3fn_scaled would dequantize"):
        load_transformer(files["gguf_Q8_0"], storage="fp8_e4m3fn_scaled")
    with pytest.raises(RuntimeError, match="fp8_e4m3fn_fast is not available: FP8 matmuls .* not on mps"):
        load_transformer(files["bare"], storage="fp8_e4m3fn_fast", device="mps")
