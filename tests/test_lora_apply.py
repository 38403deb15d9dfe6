"""Applying LoRAs: the numerical rule per weight storage (hunyuan_model/lora/apply.py), strength 0 and
removal bit-exact, stacking, per-block strengths, block swap carrying the factors, base never written."""

from __future__ import annotations

import copy

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle
from hunyuanvideo_pack.hunyuan_model.lora import (
    AppliedLora,
    BlockStrengths,
    LoraDelta,
    apply_loras,
    linear_shapes,
    parse_lora,
    remove_loras,
)
from hunyuanvideo_pack.hunyuan_model.offload import BlockSwap
from hunyuanvideo_pack.hunyuan_model.quant import (
    GGUFLinear,
    ScaledMMLinear,
    StoredWeight,
    WeightStorage,
    dequantize,
    fp8_dequantize,
    quantizable_linears,
    swap_linears,
)
from hunyuanvideo_pack.hunyuan_model.tiny import lora_files as lora_tiny

CONFIG = DiTConfig.tiny(double_blocks=2, single_blocks=2)
CPU = torch.device("cpu")
FP32_BOUND = 1e-5
# fp8_e4m3fn_fast quantizes activations to FP8 too (per tensor), so its LoRA'd output differs from the
# float reference by FP8 activation rounding: measured 4.2% here, and 3.9% for the same model without LoRA.
# FP8 (plain, scaled) and GGUF Q8_0 with LoRA match dequantized weights + delta W to 8e-7.
SCALED_MM_BOUND = 6e-2


def base_model(dtype=torch.float32) -> HunyuanVideoTransformer:
    return init_random_weights(HunyuanVideoTransformer(CONFIG, dtype=dtype), seed=8).eval()


def stored(model: HunyuanVideoTransformer, storage: str) -> HunyuanVideoTransformer:
    """``model`` with its block Linears as FP8 (scaled or fast) or GGUF Q8_0 weights."""
    import gguf

    names = quantizable_linears(CONFIG.double_blocks, CONFIG.single_blocks)
    weights = {name: model.get_submodule(name).weight for name in names}
    if storage == "gguf":
        blocks = {}
        for name, w in weights.items():
            data = gguf.quants.quantize(w.float().numpy(), gguf.GGMLQuantizationType.Q8_0)
            blocks[name] = StoredWeight(torch.from_numpy(data), tuple(w.shape), gguf.GGMLQuantizationType.Q8_0)
        swap_linears(model, blocks, WeightStorage.AS_STORED, model.compute_dtype)
    else:
        plain = {name: StoredWeight.plain(w) for name, w in weights.items()}
        swap_linears(model, plain, WeightStorage(storage), model.compute_dtype)
    return model


def dense_copy(model: HunyuanVideoTransformer) -> HunyuanVideoTransformer:
    """A float32 model with the stored weights dequantized: the reference the rule adds deltas to."""
    dense = HunyuanVideoTransformer(CONFIG, dtype=torch.float32)
    state = {}
    for name, module in model.named_modules():
        if isinstance(module, GGUFLinear):
            state[f"{name}.weight"] = dequantize(module.weight, module.qtype, (module.out_features, module.in_features))
        elif hasattr(module, "scale") and module.weight.dtype.is_floating_point and module.weight.element_size() == 1:
            state[f"{name}.weight"] = fp8_dequantize(module.weight, module.scale, torch.float32)
    for key, value in model.state_dict().items():
        state.setdefault(key, value.float())
    dense.load_state_dict({k: v for k, v in state.items() if not k.endswith(".scale")})
    return dense.eval()


@pytest.fixture(scope="module")
def inputs() -> dict:
    g = torch.Generator().manual_seed(9)
    return dict(
        latents=torch.randn(1, 16, 2, 8, 8, generator=g),
        timestep=torch.tensor([400.0]),
        text_states=torch.randn(1, 7, CONFIG.text_dim, generator=g),
        text_mask=None,
        pooled_text=torch.randn(1, CONFIG.pooled_dim, generator=g),
        guidance=6.0,
    )


@pytest.fixture(scope="module")
def two_loras():
    shapes = linear_shapes(base_model())
    factors = [lora_tiny.random_factors(shapes, rank=r, alpha=a, seed=s) for r, a, s in ((4, 2.0, 10), (8, 8.0, 11))]
    loras = [parse_lora(lora_tiny.lora_tensors(f, "musubi"), shapes, f"l{i}") for i, f in enumerate(factors)]
    return factors, loras


def by_hand(model, pairs) -> HunyuanVideoTransformer:
    """``W + sum s * alpha / r * B @ A`` on a float copy (what every storage is compared with)."""
    merged = copy.deepcopy(model)
    with torch.no_grad():
        for name in pairs[0][0]:
            weight = merged.get_submodule(name).weight
            change = sum(s * lora_tiny.delta(f, name) for f, s in pairs)
            weight.copy_((weight.float() + change).to(weight.dtype))
    return merged


def rel(a, b) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def test_strength_zero_is_no_lora_bit_for_bit(inputs, two_loras):
    model = base_model()
    expected = model(**inputs)
    out = apply_loras(model, [AppliedLora(two_loras[1][0], 0.0)])(**inputs)
    assert torch.equal(out, expected)
    zeroed = BlockStrengths.parse("double_blocks=0, single_blocks=0, other=0")
    assert torch.equal(apply_loras(model, [AppliedLora(two_loras[1][1], 1.0, zeroed)])(**inputs), expected)


def test_stacking_two_equals_merging_both(inputs, two_loras):
    (f1, f2), (l1, l2) = two_loras
    model = base_model()
    reference = by_hand(model, [(f1, 0.8), (f2, -0.5)])(**inputs)
    stacked = apply_loras(model, [AppliedLora(l1, 0.8), AppliedLora(l2, -0.5)])
    chained = apply_loras(apply_loras(model, [AppliedLora(l1, 0.8)]), [AppliedLora(l2, -0.5)])
    for candidate in (
        stacked,
        chained,
        apply_loras(model, [AppliedLora(l1, 0.8), AppliedLora(l2, -0.5)], "on_the_fly"),
    ):
        assert rel(candidate(**inputs), reference) < FP32_BOUND
    assert remove_loras(chained) is model


def test_strength_change_then_removal_gives_the_original_bit_for_bit(inputs, two_loras):
    model = base_model(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = model(**inputs)
    first = apply_loras(model, [AppliedLora(two_loras[1][0], 1.0)])
    again = apply_loras(first, [])  # the same stack once more: nothing added twice
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    weaker = apply_loras(model, [AppliedLora(two_loras[1][0], 0.3)])  # ComfyUI re-running with a new strength
    assert not torch.equal(weaker(**inputs), expected)
    assert torch.equal(remove_loras(weaker)(**inputs), expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the base was never written


def test_bf16_merge_is_the_full_precision_merge_rounded_once(inputs, two_loras):
    (f1, _), (l1, _) = two_loras
    model = base_model(torch.bfloat16)
    ours = apply_loras(model, [AppliedLora(l1, 0.9)], "merge")
    hand = by_hand(model, [(f1, 0.9)])
    differing = total = 0
    for name in f1:
        a, b = ours.get_submodule(name).weight.float(), hand.get_submodule(name).weight.float()
        # Both round the float32 sum once; float32 summation order may move a value by one bf16 step.
        assert ((a - b).abs() <= b.abs() * 2**-7 + 1e-6).all(), name
        differing, total = differing + (a != b).sum().item(), total + a.numel()
    assert differing / total < 0.01
    assert rel(ours(**inputs), hand(**inputs)) < 2e-2  # the bf16 forward's own rounding (test_dit's bound)
    untouched = [n for n, p in model.named_parameters() if not any(n.startswith(m + ".weight") for m in f1)]
    own = dict(ours.named_parameters())
    assert all(own[n].data_ptr() == p.data_ptr() for n, p in model.named_parameters() if n in untouched)


@pytest.mark.parametrize("storage", ["fp8_e4m3fn_scaled", "fp8_e4m3fn", "gguf", "fp8_e4m3fn_fast"])
def test_fp8_and_gguf_keep_their_weights_and_add_the_change_on_the_fly(inputs, two_loras, storage):
    (f1, _), (l1, _) = two_loras
    model = stored(base_model(), storage)
    styled = apply_loras(model, [AppliedLora(l1, 0.9)])
    qkv = styled.get_submodule("double_blocks.0.img_attn_qkv")
    assert qkv.weight is not model.get_submodule("double_blocks.0.img_attn_qkv").weight
    assert qkv.weight.data_ptr() == model.get_submodule("double_blocks.0.img_attn_qkv").weight.data_ptr()
    assert isinstance(qkv.lora_delta, LoraDelta)
    reference = by_hand(dense_copy(model), [(f1, 0.9)])(**inputs)
    bound = SCALED_MM_BOUND if storage == "fp8_e4m3fn_fast" else FP32_BOUND
    assert rel(styled(**inputs), reference) < bound
    if storage == "fp8_e4m3fn_fast":
        assert isinstance(qkv, ScaledMMLinear)


@pytest.mark.parametrize("storage", ["bf16", "gguf"])
def test_swapped_blocks_carry_their_lora(inputs, two_loras, storage):
    (_, l2) = two_loras[1]
    model = base_model(torch.bfloat16) if storage == "bf16" else stored(base_model(), "gguf")
    styled = apply_loras(model, [AppliedLora(l2, 0.7)], "on_the_fly")
    expected = styled(**inputs)
    swap = BlockSwap(double_blocks=2, single_blocks=2, offload_txt_in=True)
    with TransformerHandle(styled, CPU, CPU, swap).running(tuple(inputs["latents"].shape)) as running:
        outs = [running(**inputs) for _ in range(2)]
    assert all(torch.equal(out, expected) for out in outs)


def test_per_block_strengths_scale_only_the_named_blocks(inputs, two_loras):
    (f1, _), (l1, _) = two_loras
    model = base_model()
    blocks = BlockStrengths.parse("double_blocks.1=0, single_blocks.0-1=0.5, other=0")
    pairs = {}
    for name in f1:
        factor = blocks.factor(name)
        pairs[name] = factor
    assert pairs["double_blocks.1.img_attn_qkv"] == 0 and pairs["double_blocks.0.img_attn_qkv"] == 1
    assert pairs["single_blocks.1.linear1"] == 0.5 and pairs["final_layer.linear"] == 0
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for name, factor in pairs.items():
            reference.get_submodule(name).weight += factor * lora_tiny.delta(f1, name)
    assert rel(apply_loras(model, [AppliedLora(l1, 1.0, blocks)])(**inputs), reference(**inputs)) < FP32_BOUND
    assert str(blocks) == "double_blocks.1=0, single_blocks.0-1=0.5, other=0"
    with pytest.raises(ValueError, match="double_blocks.0-9=0.5"):
        BlockStrengths.parse("double=1")


def test_auto_merges_only_within_the_memory_budget(two_loras):
    (f1, _), (l1, _) = two_loras
    model = base_model(torch.bfloat16)
    everywhere = apply_loras(model, [AppliedLora(l1)])  # copies of every Linear: far over 10% of the model
    assert hasattr(everywhere.get_submodule("double_blocks.0.img_attn_qkv"), "lora_delta")
    one = {"double_blocks.1.img_attn_proj": f1["double_blocks.1.img_attn_proj"]}
    shapes = linear_shapes(model)
    small = parse_lora(lora_tiny.lora_tensors(one, "musubi"), shapes, "one layer")
    merged = apply_loras(model, [AppliedLora(small)]).get_submodule("double_blocks.1.img_attn_proj")
    assert not hasattr(merged, "lora_delta")
    assert merged.weight.data_ptr() != model.get_submodule("double_blocks.1.img_attn_proj").weight.data_ptr()
