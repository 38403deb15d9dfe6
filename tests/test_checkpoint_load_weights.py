"""Filling a meta-built model from each file format: same outputs as the original within stated bounds."""

import gguf
import pytest
import torch
from checkpoint_files import write_gguf
from torch import nn

from hunyuanvideo_pack.hunyuan_model.checkpoint import CheckpointError, load_weights, open_checkpoint, with_scale_map
from hunyuanvideo_pack.hunyuan_model.quant import (
    CastLinear,
    GGUFLinear,
    ScaledMMLinear,
    WeightStorage,
    keeps_base_precision,
    quantize_fp8_scaled,
)
from hunyuanvideo_pack.hunyuan_model.tiny.dit_files import write_safetensors

HIDDEN = 256
# Relative error of the output against the float32 original, per format/storage (measured: bf16
# 0.003, Q8_0 0.010, Q5_1 0.07, Q4_0 0.16, FP8 0.042, FP8 fast 0.057). GGUF files quantize the
# base-precision layers too (dequantized at load), so every layer of the stand-in contributes.
BOUNDS = {"exact": 0.0, "bf16": 0.01, "Q8_0": 0.02, "Q5_1": 0.12, "Q4_0": 0.25, "fp8": 0.06, "fp8_fast": 0.1}


class Stand(nn.Module):
    """A DiT-shaped stand-in: a Conv3d embedder, a block with quantizable Linears and norms, a head."""

    def __init__(self):
        super().__init__()
        self.img_in = nn.Module()
        self.img_in.proj = nn.Conv3d(16, HIDDEN, (1, 2, 2), (1, 2, 2))
        block = nn.Module()
        block.img_attn_qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
        block.img_attn_q_norm = nn.LayerNorm(HIDDEN)
        block.img_mlp = nn.Module()
        block.img_mlp.fc1 = nn.Linear(HIDDEN, 2 * HIDDEN)
        single = nn.Module()
        single.linear2 = nn.Linear(2 * HIDDEN, HIDDEN)
        self.double_blocks = nn.ModuleList([block])
        self.single_blocks = nn.ModuleList([single])
        self.final_layer = nn.Module()
        self.final_layer.linear = nn.Linear(HIDDEN, 64)

    def forward(self, x):  # x: b 16 t h w
        h = self.img_in.proj(x).flatten(2).transpose(1, 2)
        block = self.double_blocks[0]
        h = block.img_attn_q_norm(h + block.img_attn_qkv(h)[..., :HIDDEN])
        h = self.single_blocks[0].linear2(torch.nn.functional.gelu(block.img_mlp.fc1(h)))
        return self.final_layer.linear(h)


@pytest.fixture(scope="module")
def original():
    torch.manual_seed(0)
    model = Stand()
    for module in model.modules():  # weights that make every layer matter (known_traps.md)
        if isinstance(module, nn.Linear | nn.Conv3d):
            nn.init.normal_(module.weight, std=module.weight[0].numel() ** -0.5)
    return model.eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 16, 2, 4, 4, generator=torch.Generator().manual_seed(1))


def meta_model():
    with torch.device("meta"):
        return Stand()


def relative_error(actual, expected):
    return ((actual - expected).norm() / expected.norm()).item()


def load(path, storage=WeightStorage.AS_STORED, **kwargs):
    model = meta_model()  # float32: the base precision everything not quantized is loaded in
    return load_weights(model, open_checkpoint(path), storage, **kwargs)


@pytest.mark.parametrize(
    "storage, bound, layer_type",
    [
        ("as_stored", "exact", nn.Linear),
        ("fp8_e4m3fn", "fp8", CastLinear),
        ("fp8_e4m3fn_scaled", "fp8", CastLinear),
        ("fp8_e4m3fn_fast", "fp8_fast", ScaledMMLinear),
    ],
)
def test_a_float32_file_in_every_storage(tmp_path, original, x, storage, bound, layer_type):
    path = write_safetensors(original.state_dict(), tmp_path / "dit.safetensors", "model.diffusion_model.")
    model = load(path, storage)
    assert type(model.double_blocks[0].img_attn_qkv) is layer_type
    assert type(model.final_layer.linear) is nn.Linear  # base precision
    with torch.no_grad():
        assert relative_error(model(x), original(x)) <= BOUNDS[bound]


def test_a_bf16_file_loads_with_bf16_rounding_only(tmp_path, original, x):
    state = {key: value.bfloat16() for key, value in original.state_dict().items()}
    model = load(write_safetensors(state, tmp_path / "bf16.safetensors"))
    with torch.no_grad():
        assert relative_error(model(x), original(x)) < BOUNDS["bf16"]


def test_tencent_fp8_with_its_map(tmp_path, original, x):
    state, scales = dict(original.state_dict()), {}
    for key in list(state):
        if not keeps_base_precision(key):
            state[key], scale = quantize_fp8_scaled(state[key])
            scales[key.removesuffix(".weight")] = scale.reshape(1)
    torch.save({"module": state}, tmp_path / "dit_fp8.pt")
    torch.save(scales, tmp_path / "dit_fp8_map.pt")
    model = meta_model()
    load_weights(model, with_scale_map(open_checkpoint(tmp_path / "dit_fp8.pt")))
    assert model.double_blocks[0].img_attn_qkv.scale is not None
    with torch.no_grad():
        assert relative_error(model(x), original(x)) < BOUNDS["fp8"]


@pytest.mark.parametrize("qtype", ["Q8_0", "Q5_1", "Q4_0"])
def test_a_gguf_stays_quantized_and_close(tmp_path, original, x, qtype):
    tensors = {}
    for key, value in original.state_dict().items():
        if value.dim() == 2:
            tensors[key] = (gguf.quants.quantize(value.numpy(), gguf.GGMLQuantizationType[qtype]), qtype)
        else:
            tensors[key] = value.numpy()  # 1-D and the 5-D img_in as F32, as city96's files
    model = load(write_gguf(tmp_path / f"dit-{qtype}.gguf", tensors))
    assert isinstance(model.double_blocks[0].img_attn_qkv, GGUFLinear)
    assert model.final_layer.linear.weight.dtype == torch.float32  # dequantized at load: base precision
    with torch.no_grad():
        assert relative_error(model(x), original(x)) < BOUNDS[qtype]


def test_keys_that_do_not_fit_are_listed(tmp_path, original):
    state = dict(original.state_dict())
    state["double_blocks.0.extra.weight"] = torch.zeros(3)
    del state["final_layer.linear.bias"]
    path = write_safetensors(state, tmp_path / "odd.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"1 unexpected keys, first: \['double_blocks.0.extra.weight'\]; 1 missing keys, first: \['final_layer.linear.bias'\]",
    ):
        load(path)


def test_progress_is_reported_and_can_cancel(tmp_path, original):
    path = write_safetensors(original.state_dict(), tmp_path / "dit.safetensors")
    seen = []
    load(path, progress=lambda done, total: seen.append((done, total)))
    total = len(original.state_dict())
    assert seen == [(i, total) for i in range(1, total + 1)]

    def cancel(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load(path, progress=cancel)


def test_a_device_moves_each_tensor_as_it_loads(tmp_path, original):
    path = write_safetensors(original.state_dict(), tmp_path / "dit.safetensors")
    model = load(path, "fp8_e4m3fn_scaled", device="cpu")
    assert model.double_blocks[0].img_attn_qkv.weight.dtype == torch.float8_e4m3fn
    assert all(not t.is_meta for t in model.state_dict().values())


def test_the_fast_path_is_checked_against_the_device_before_loading(tmp_path, original):
    path = write_safetensors(original.state_dict(), tmp_path / "dit.safetensors")
    with pytest.raises(RuntimeError, match="fp8_e4m3fn_fast is not available: FP8 matmuls .* not on mps"):
        load(path, "fp8_e4m3fn_fast", device="mps")
