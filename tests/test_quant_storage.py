"""FP8 conversion, the base-precision rule, storage Linears and swapping them into a meta-built model."""

import gguf
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hunyuanvideo_pack.hunyuan_model.quant import (
    DIT_STORAGE,
    LLM_STORAGE,
    CastLinear,
    GGMLType,
    GGUFLinear,
    ScaledMMLinear,
    StoredWeight,
    WeightStorage,
    assign_tensor,
    cast_to_fp8,
    dequantize,
    keeps_base_precision,
    looks_prescaled,
    make_linear,
    meta_tensors,
    quantizable_linears,
    quantize_fp8_scaled,
    require_scaled_mm,
    scaled_mm_unsupported_reason,
    swap_linears,
)

# Relative error bounds of a layer's output against the float32 original, per storage: FP8 keeps
# 3 mantissa bits (relative step 1/16 near the top of each binade, errors average out over a dot
# product); the fast path also quantizes activations.
BOUNDS = {"fp8_e4m3fn": 0.05, "fp8_e4m3fn_scaled": 0.05, "fp8_e4m3fn_fast": 0.08, "Q8_0": 0.01}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).norm() / expected.float().norm()).item()


def weight(out_features=64, in_features=256, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out_features, in_features, generator=generator) / in_features**0.5


def q8_0_blocks(w: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(gguf.quants.quantize(w.numpy(), gguf.GGMLQuantizationType.Q8_0))


# ---------------------------------------------------------------------------------------------
# The base-precision rule


def tencent_keys(double_blocks: int = 2, single_blocks: int = 2) -> list[str]:
    top = [
        "img_in.proj.weight", "img_in.proj.bias", "txt_in.input_embedder.weight", "txt_in.t_embedder.mlp.0.weight",
        "txt_in.c_embedder.linear_1.weight", "txt_in.individual_token_refiner.blocks.0.self_attn_qkv.weight",
        "txt_in.individual_token_refiner.blocks.0.mlp.fc1.weight", "txt_in.individual_token_refiner.blocks.0.norm1.weight",
        "time_in.mlp.0.weight", "time_in.mlp.2.bias", "vector_in.in_layer.weight", "guidance_in.mlp.2.weight",
        "final_layer.linear.weight", "final_layer.adaLN_modulation.1.weight",
    ]  # fmt: skip
    double = [
        f"double_blocks.{i}.{s}_{p}"
        for i in range(double_blocks)
        for s in ("img", "txt")
        for p in ("mod.linear.weight", "mod.linear.bias", "attn_qkv.weight", "attn_qkv.bias", "attn_q_norm.weight",
                  "attn_k_norm.weight", "attn_proj.weight", "attn_proj.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                  "mlp.fc2.weight", "mlp.fc2.bias")
    ]  # fmt: skip
    single = [
        f"single_blocks.{i}.{p}"
        for i in range(single_blocks)
        for p in ("linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "q_norm.weight", "k_norm.weight",
                  "modulation.linear.weight", "modulation.linear.bias")
    ]  # fmt: skip
    return top + double + single


def test_only_block_linear_weights_may_be_quantized():
    quantized = sorted(key for key in tencent_keys() if not keeps_base_precision(key))
    assert quantized == sorted(f"{name}.weight" for name in quantizable_linears(2, 2))
    assert len(quantized) == 2 * 10 + 2 * 3
    assert all(key.endswith(".weight") and "norm" not in key for key in quantized)
    assert len(quantizable_linears(20, 40)) == 320  # Tencent's FP8 release converts exactly these
    assert keeps_base_precision("double_blocks.0.img_attn_qkv.weight.extra")
    assert keeps_base_precision("model.double_blocks.0.img_attn_qkv.weight")  # keys are prefix-free


# ---------------------------------------------------------------------------------------------
# FP8 conversion


def test_scaled_fp8_follows_tencents_recipe():
    w = weight()
    w8, scale = quantize_fp8_scaled(w)
    assert w8.dtype == torch.float8_e4m3fn and scale.dtype == torch.float32 and scale.shape == ()
    assert scale.item() == pytest.approx(w.abs().max().item() / 448, rel=1e-6)
    assert w8.float().abs().max().item() == 448.0
    assert relative_error(w8.float() * scale, w) < 0.03
    assert looks_prescaled(w8)
    assert not looks_prescaled(cast_to_fp8(w))


def test_plain_cast_saturates_instead_of_making_nan():
    cast = cast_to_fp8(torch.tensor([1000.0, -1000.0, 0.5]))
    assert cast.float().tolist() == [448.0, -448.0, 0.5]


def test_zero_weight_gets_unit_scale():
    w8, scale = quantize_fp8_scaled(torch.zeros(16, 16))
    assert scale.item() == 1.0 and not w8.float().any()


# ---------------------------------------------------------------------------------------------
# Storage Linears


def test_cast_linear_computes_tencents_fp8_forward_exactly():
    w8, scale = quantize_fp8_scaled(weight())
    bias = torch.randn(64).bfloat16()
    layer = CastLinear.from_weight(w8, scale)
    layer.bias = nn.Parameter(bias, requires_grad=False)
    x = torch.randn(2, 5, 256).bfloat16()

    # HV fp8_optimization.py: W = W8.to(bf16) * scale.to(bf16), then F.linear.
    expected = F.linear(x, w8.to(torch.bfloat16) * scale.to(torch.bfloat16), bias)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer(x.float()), F.linear(x.float(), w8.float() * scale, bias.float()))


def test_scaled_mm_linear_stays_close_to_the_float_layer():
    w, bias, x = weight(), torch.randn(64), torch.randn(3, 7, 256)
    layer = ScaledMMLinear.from_weight(*quantize_fp8_scaled(w))
    layer.bias = nn.Parameter(bias, requires_grad=False)

    out = layer(x)

    assert out.shape == (3, 7, 64) and out.dtype == torch.float32
    assert relative_error(out, F.linear(x, w, bias)) < BOUNDS["fp8_e4m3fn_fast"]
    assert relative_error(layer(x.bfloat16()), F.linear(x, w, bias)) < BOUNDS["fp8_e4m3fn_fast"]
    # Large activations do not overflow e4m3 (448): they are scaled per call.
    assert relative_error(layer(x * 1000), F.linear(x * 1000, w, bias)) < BOUNDS["fp8_e4m3fn_fast"]


@pytest.mark.parametrize("dtype, amax", [(torch.bfloat16, 3.0), (torch.bfloat16, 100.0), (torch.float16, 1e-3)])
def test_scaled_mm_linear_has_no_gain_error_from_rounding_its_activation_scale(dtype, amax):
    # 448 / amax rounded to bf16 is off by up to 0.2%; the matmul must undo the rounded factor it applied.
    layer = ScaledMMLinear.from_weight(*quantize_fp8_scaled(weight()))
    x = torch.randn(32, 256, generator=torch.Generator().manual_seed(1))
    x = (x / x.abs().max() * amax).to(dtype)
    factor = (torch.finfo(torch.float8_e4m3fn).max / x.abs().max().float()).clamp(max=torch.finfo(dtype).max)
    x8 = (x * factor.to(dtype)).clamp(-448, 448).to(torch.float8_e4m3fn)
    # The same quantized activations, taken back by exactly the factor they were multiplied by.
    expected = (x8.float() / factor.to(dtype).float()) @ (layer.weight.float() * layer.scale).t()

    out = layer(x).float()

    gain = (out * expected).sum() / (expected * expected).sum()
    assert abs(gain.item() - 1) < 2e-4
    assert relative_error(out, expected) < 5e-3  # only the output's own rounding to x's dtype


def test_scaled_mm_linear_needs_feature_counts_divisible_by_16():
    with pytest.raises(ValueError, match="divisible by 16, got 24 -> 64"):
        ScaledMMLinear(24, 64)


def test_gguf_linear_dequantizes_on_the_fly():
    w, bias, x = weight(), torch.randn(64), torch.randn(4, 256)
    blocks = q8_0_blocks(w)
    layer = GGUFLinear.from_blocks(blocks, GGMLType.Q8_0, (64, 256))
    layer.bias = nn.Parameter(bias, requires_grad=False)
    expected_weight = torch.from_numpy(gguf.quants.dequantize(blocks.numpy(), gguf.GGMLQuantizationType.Q8_0))

    assert layer.weight.dtype == torch.uint8 and layer.weight.data_ptr() == blocks.data_ptr()
    assert torch.equal(layer(x), F.linear(x, expected_weight, bias))
    assert relative_error(layer(x), F.linear(x, w, bias)) < BOUNDS["Q8_0"]


@pytest.mark.parametrize("kind", ["cast", "scaled_mm", "gguf"])
def test_storage_linears_build_on_meta_and_load_by_assignment(kind):
    w = weight()
    w8, scale = quantize_fp8_scaled(w)
    bias = torch.randn(64)
    if kind == "cast":
        layer, state = CastLinear(256, 64, scaled=True, device="meta"), {"weight": w8, "scale": scale}
    elif kind == "scaled_mm":
        layer, state = ScaledMMLinear(256, 64, device="meta"), {"weight": w8, "scale": scale}
    else:
        layer, state = GGUFLinear(256, 64, GGMLType.Q8_0, device="meta"), {"weight": q8_0_blocks(w).reshape(64, -1)}
    assert meta_tensors(layer)

    layer.load_state_dict({**state, "bias": bias}, assign=True)

    assert meta_tensors(layer) == [] and not any(p.requires_grad for p in layer.parameters())
    assert layer.weight.data_ptr() == state["weight"].data_ptr()  # assigned, not copied
    x = torch.randn(2, 256)
    assert relative_error(layer(x), F.linear(x, w, bias)) < BOUNDS["fp8_e4m3fn_fast"]


@pytest.mark.parametrize("kind", ["cast", "scaled_mm", "gguf"])
def test_moving_a_storage_linear_moves_the_stored_form(kind):
    w = weight()
    if kind == "gguf":
        layer = GGUFLinear.from_blocks(q8_0_blocks(w), GGMLType.Q8_0, (64, 256))
    else:
        layer = (CastLinear if kind == "cast" else ScaledMMLinear).from_weight(*quantize_fp8_scaled(w))
    dtypes = {name: t.dtype for name, t in layer.state_dict().items()}
    nbytes = sum(t.nbytes for t in layer.state_dict().values())

    moved = layer.to("meta")  # stands in for block swapping between devices

    assert {name: t.dtype for name, t in moved.state_dict().items()} == dtypes
    assert all(t.is_meta for t in moved.state_dict().values())
    assert nbytes < w.nbytes / 3  # one byte (or less) per weight, not a dequantized copy


def test_scaled_matmuls_are_refused_with_the_reason(monkeypatch):
    assert scaled_mm_unsupported_reason("cpu") is None
    assert "only available on NVIDIA GPUs, not on mps" in scaled_mm_unsupported_reason("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 6))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA GeForce RTX 3090")
    with pytest.raises(RuntimeError, match=r"fp8_e4m3fn_fast is not available: .*8\.9 .*RTX 3090 is 8\.6"):
        require_scaled_mm("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 9))
    require_scaled_mm("cuda:0")


# ---------------------------------------------------------------------------------------------
# make_linear and swapping into a model built on meta


@pytest.mark.parametrize("storage", DIT_STORAGE.options.values(), ids=lambda s: s.value)
def test_make_linear_from_a_bf16_weight(storage):
    w = weight().bfloat16()
    x = torch.randn(6, 256)
    layer = make_linear(StoredWeight.plain(w), storage, torch.float32)
    expected_type = {
        WeightStorage.AS_STORED: nn.Linear,
        WeightStorage.FP8_E4M3FN: CastLinear,
        WeightStorage.FP8_E4M3FN_SCALED: CastLinear,
        WeightStorage.FP8_E4M3FN_FAST: ScaledMMLinear,
    }[storage]
    assert type(layer) is expected_type and layer.bias is None
    if storage is WeightStorage.AS_STORED:
        assert layer.weight.dtype == torch.float32 and torch.equal(layer(x), x @ w.float().t())
    else:
        assert layer.weight.dtype == torch.float8_e4m3fn
        assert relative_error(layer(x), x @ w.float().t()) < BOUNDS[storage.value]
    assert (getattr(layer, "scale", None) is not None) == (storage.value in ("fp8_e4m3fn_scaled", "fp8_e4m3fn_fast"))


def test_plain_fp8_casts_lose_precision_on_small_weights_and_scaled_ones_do_not():
    # Real DiT weights are small; plain e4m3 has few levels near zero, hence the scaled choice.
    w = weight() * 0.01
    x = torch.randn(6, 256)
    plain = make_linear(StoredWeight.plain(w), WeightStorage.FP8_E4M3FN, torch.float32)
    scaled = make_linear(StoredWeight.plain(w), WeightStorage.FP8_E4M3FN_SCALED, torch.float32)
    assert relative_error(scaled(x), x @ w.t()) < BOUNDS["fp8_e4m3fn_scaled"] < relative_error(plain(x), x @ w.t())


@pytest.mark.parametrize("storage", DIT_STORAGE.options.values(), ids=lambda s: s.value)
def test_make_linear_keeps_stored_fp8_and_its_scale(storage):
    w8, scale = quantize_fp8_scaled(weight())
    layer = make_linear(StoredWeight(w8, (64, 256), scale=scale), storage, torch.bfloat16)
    assert layer.weight.data_ptr() == w8.data_ptr() and layer.scale == scale
    assert isinstance(layer, ScaledMMLinear if storage is WeightStorage.FP8_E4M3FN_FAST else CastLinear)


def test_fast_storage_rescales_e5m2_weights_to_e4m3():
    w = weight()
    layer = make_linear(StoredWeight.plain(w.to(torch.float8_e5m2)), WeightStorage.FP8_E4M3FN_FAST, torch.float32)
    x = torch.randn(3, 256)
    assert layer.weight.dtype == torch.float8_e4m3fn
    assert relative_error(layer(x), x @ w.t()) < 0.1


def test_default_storage_is_dense_except_gguf_blocks():
    """The text encoders' ``default``: FP8 dequantized with its scale, GGUF blocks kept (same numbers)."""
    w8, scale = quantize_fp8_scaled(weight())
    dense = make_linear(StoredWeight(w8, (64, 256), scale=scale), WeightStorage.DEFAULT, torch.float32)
    assert type(dense) is nn.Linear and torch.equal(dense.weight, w8.float() * scale)
    stored = StoredWeight(q8_0_blocks(weight()), (64, 256), qtype=GGMLType.Q8_0)
    blocks = make_linear(stored, WeightStorage.DEFAULT, torch.float32)
    x = torch.randn(3, 256)
    assert isinstance(blocks, GGUFLinear) and torch.equal(blocks(x), x @ stored.dense(torch.float32).t())


def test_storage_choices_keep_each_node_s_option_names():
    assert DIT_STORAGE.names == ("as_stored", "fp8_e4m3fn", "fp8_e4m3fn_scaled", "fp8_e4m3fn_fast")
    assert LLM_STORAGE.names == ("default", "fp8_e4m3fn", "nf4")
    assert LLM_STORAGE.pick("fp8_e4m3fn") is WeightStorage.FP8_E4M3FN_SCALED  # the LLM's FP8 has always been scaled
    assert DIT_STORAGE.pick("fp8_e4m3fn") is WeightStorage.FP8_E4M3FN
    with pytest.raises(ValueError, match=r"unknown DiT weight storage 'nf4'; expected one of \('as_stored'"):
        DIT_STORAGE.pick("nf4")


def test_gguf_weights_are_not_requantized_to_fp8():
    stored = StoredWeight(q8_0_blocks(weight()), (64, 256), qtype=GGMLType.Q8_0)
    assert isinstance(make_linear(stored, WeightStorage.AS_STORED, torch.float32), GGUFLinear)
    with pytest.raises(ValueError, match="fp8_e4m3fn_scaled would dequantize these Q8_0 GGUF weights"):
        make_linear(stored, WeightStorage.FP8_E4M3FN_SCALED, torch.float32)


class TinyBlocks(nn.Module):
    """A stand-in with the DiT's attribute names: Linears addressed by Tencent keys."""

    def __init__(self, hidden: int = 256):
        super().__init__()
        double = nn.Module()
        double.img_attn_qkv = nn.Linear(hidden, 3 * hidden)
        double.img_mod = nn.Module()
        double.img_mod.linear = nn.Linear(hidden, 2 * hidden)
        double.img_attn_q_norm = nn.LayerNorm(hidden)
        single = nn.Module()
        single.linear1 = nn.Linear(hidden, hidden)
        self.double_blocks = nn.ModuleList([double])
        self.single_blocks = nn.ModuleList([single])
        self.final_layer = nn.Module()
        self.final_layer.linear = nn.Linear(hidden, 16)

    def forward(self, x):
        block = self.double_blocks[0]
        h = block.img_attn_q_norm(x)
        h = block.img_attn_qkv(h)[..., : x.shape[-1]] + block.img_mod.linear(h)[..., : x.shape[-1]]
        return self.final_layer.linear(self.single_blocks[0].linear1(h))


@pytest.mark.parametrize("storage", [WeightStorage.AS_STORED, WeightStorage.FP8_E4M3FN_SCALED], ids=lambda s: s.value)
def test_swapping_and_assigning_fills_a_meta_model(storage):
    torch.manual_seed(0)
    reference = TinyBlocks()
    state = reference.state_dict()
    with torch.device("meta"):
        model = TinyBlocks()
    quantized = {key.removesuffix(".weight") for key in state if not keeps_base_precision(key)}
    assert quantized == {"double_blocks.0.img_attn_qkv", "double_blocks.0.img_mod.linear", "single_blocks.0.linear1"}
    stored = {name: StoredWeight.plain(state[f"{name}.weight"]) for name in quantized}
    # One layer comes as GGUF blocks, as a GGUF file would hold it (kept under as_stored only).
    if storage is WeightStorage.AS_STORED:
        blocks = q8_0_blocks(state["single_blocks.0.linear1.weight"])
        stored["single_blocks.0.linear1"] = StoredWeight(blocks, (256, 256), qtype=GGMLType.Q8_0)

    swap_linears(model, stored, storage, torch.float32)
    for key, tensor in state.items():
        if keeps_base_precision(key):
            assign_tensor(model, key, tensor)

    assert meta_tensors(model) == []
    assert isinstance(model.final_layer.linear, nn.Linear)  # base precision, untouched
    x = torch.randn(2, 3, 256)
    bound = BOUNDS["fp8_e4m3fn_scaled"] if storage is WeightStorage.FP8_E4M3FN_SCALED else BOUNDS["Q8_0"]
    assert 0 < relative_error(model(x), reference(x)) < bound
    if storage is WeightStorage.AS_STORED:
        assert isinstance(model.single_blocks[0].linear1, GGUFLinear)
        assert (
            model.double_blocks[0].img_attn_qkv.weight.data_ptr()
            == state["double_blocks.0.img_attn_qkv.weight"].data_ptr()
        )


def test_swap_and_assign_errors_name_the_key():
    with torch.device("meta"):
        model = TinyBlocks()
    with pytest.raises(TypeError, match="double_blocks.0.img_attn_q_norm is a LayerNorm, not an nn.Linear"):
        swap_linears(
            model, {"double_blocks.0.img_attn_q_norm": StoredWeight.plain(torch.zeros(256))}, "as_stored", torch.float32
        )
    with pytest.raises(
        ValueError,
        match=r"single_blocks.0.linear1.weight: the file has shape \[128, 256\], the model expects \[256, 256\]",
    ):
        swap_linears(
            model, {"single_blocks.0.linear1": StoredWeight.plain(torch.zeros(128, 256))}, "as_stored", torch.float32
        )
    with pytest.raises(ValueError, match=r"final_layer.linear.bias: the file has shape \[8\]"):
        assign_tensor(model, "final_layer.linear.bias", torch.zeros(8))
    with pytest.raises(KeyError, match="final_layer.linear.scale"):
        assign_tensor(model, "final_layer.linear.scale", torch.zeros(()))


def test_stored_weight_dense_views_and_dequantizes():
    w = weight()
    plain = StoredWeight.plain(w)
    assert plain.dense(torch.float32) is w and plain.is_plain_float
    w8, scale = quantize_fp8_scaled(w)
    scaled = StoredWeight(w8, (64, 256), scale=scale.reshape(1))
    assert scaled.storage_name == "float8_e4m3fn scaled" and not scaled.is_plain_float
    assert torch.equal(scaled.dense(torch.bfloat16), w8.bfloat16() * scale.bfloat16())
    blocks = q8_0_blocks(w)
    quantized = StoredWeight(blocks, (64, 256), qtype=GGMLType.Q8_0)
    assert quantized.storage_name == "Q8_0"
    assert torch.equal(quantized.dense(torch.float32), dequantize(blocks, "Q8_0", (64, 256)))
    with pytest.raises(ValueError, match=r"Q4_K tensor of shape \[64, 256\] needs 9216 bytes"):
        StoredWeight(blocks, (64, 256), qtype=GGMLType.Q4_K)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conversion_leaves_the_source_weight_alone(dtype):
    w = weight().to(dtype) * 1000
    before = w.clone()
    quantize_fp8_scaled(w)
    cast_to_fp8(w)
    assert torch.equal(w, before)


def test_sliced_conversion_equals_the_whole_tensor_formula(monkeypatch):
    from hunyuanvideo_pack.hunyuan_model.quant import fp8

    monkeypatch.setattr(fp8, "_CPU_SLICE", 1000)  # many slices and a remainder
    w = weight().bfloat16()
    w8, scale = quantize_fp8_scaled(w)
    expected = (w.float() / scale).clamp(-448, 448).to(torch.float8_e4m3fn)
    assert torch.equal(w8.view(torch.uint8), expected.view(torch.uint8))
    assert torch.equal(cast_to_fp8(w).view(torch.uint8), w.float().to(torch.float8_e4m3fn).view(torch.uint8))
