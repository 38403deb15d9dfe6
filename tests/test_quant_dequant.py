"""GGUF dequantization in torch against the gguf package's numpy reference, type by type."""

import gguf
import numpy as np
import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.quant import GGMLType, UnsupportedQuantTypeError, dequantize, ggml_type
from hunyuanvideo_pack.hunyuan_model.quant import dequant as dequant_module
from hunyuanvideo_pack.hunyuan_model.quant.ggml_types import BLOCK_LAYOUTS

# Byte offsets of the fp16 fields (d, dmin) in each block (ggml-common.h). Random bytes there
# could be NaN or inf, which makes "equal" meaningless; every other byte is random.
HALF_FIELDS = {
    GGMLType.Q4_0: [0],
    GGMLType.Q4_1: [0, 2],
    GGMLType.Q5_0: [0],
    GGMLType.Q5_1: [0, 2],
    GGMLType.Q8_0: [0],
    GGMLType.Q2_K: [80, 82],
    GGMLType.Q3_K: [108],
    GGMLType.Q4_K: [0, 2],
    GGMLType.Q5_K: [0, 2],
    GGMLType.Q6_K: [208],
}
BLOCK_TYPES = list(HALF_FIELDS)
# What gguf-py can quantize, so these are also checked on real (Gaussian) data.
QUANTIZABLE = [GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.BF16]


def random_blocks(qtype: GGMLType, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    blocks = rng.integers(0, 256, size=(n_blocks, BLOCK_LAYOUTS[qtype].type_size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype]:
        halves = rng.normal(0, 0.05, size=n_blocks).astype(np.float16)
        blocks[:, offset : offset + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def reference(raw: np.ndarray, qtype: GGMLType) -> np.ndarray:
    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType(int(qtype)))


def test_block_layouts_match_ggml():
    for qtype, layout in BLOCK_LAYOUTS.items():
        expected = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(int(qtype))]
        assert (layout.block_size, layout.type_size) == expected, qtype.name


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_random_blocks_equal_gguf_bit_for_bit(qtype, monkeypatch):
    # A small CPU chunk makes the chunk loop run several times, with a remainder.
    monkeypatch.setattr(dequant_module, "_CPU_CHUNK_WEIGHTS", 1000)
    rng = np.random.default_rng(int(qtype))
    block_size = BLOCK_LAYOUTS[qtype].block_size
    rows, cols = 37, 3 * 256
    raw = random_blocks(qtype, rows * cols // block_size, rng).reshape(rows, -1)
    expected = reference(raw, qtype)

    ours = dequantize(torch.from_numpy(raw), qtype, (rows, cols))

    assert ours.dtype == torch.float32 and ours.shape == (rows, cols)
    assert np.isfinite(expected).all()
    np.testing.assert_array_equal(ours.numpy(), expected)
    as_bf16 = dequantize(torch.from_numpy(raw), qtype, (rows, cols), torch.bfloat16)
    assert torch.equal(as_bf16, torch.from_numpy(expected).bfloat16())


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_single_blocks_and_one_block_remainders(qtype, monkeypatch):
    # A one-block slice is contiguous but starts mid-buffer: wider views must still line up.
    block_size = BLOCK_LAYOUTS[qtype].block_size
    monkeypatch.setattr(dequant_module, "_CPU_CHUNK_WEIGHTS", 2 * block_size)
    raw = random_blocks(qtype, 3, np.random.default_rng(3))
    for count in (1, 3):
        expected = reference(raw[:count].reshape(1, -1), qtype).reshape(-1)
        ours = dequantize(torch.from_numpy(raw[:count]), qtype, (count * block_size,))
        np.testing.assert_array_equal(ours.numpy(), expected)


@pytest.mark.parametrize("qtype", QUANTIZABLE, ids=lambda t: t.name)
def test_quantized_real_data_equals_gguf_and_stays_close_to_the_original(qtype):
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 0.02, size=(48, 256)).astype(np.float32)
    raw = gguf.quants.quantize(weights, gguf.GGMLQuantizationType(int(qtype)))

    ours = dequantize(torch.from_numpy(raw), qtype, weights.shape).numpy()

    np.testing.assert_array_equal(ours, reference(raw, qtype))
    relative = np.abs(ours - weights).max() / np.abs(weights).max()
    bound = {GGMLType.Q8_0: 0.01, GGMLType.BF16: 0.005}.get(qtype, 0.1)
    assert relative < bound


@pytest.mark.parametrize("qtype", [GGMLType.F32, GGMLType.F16, GGMLType.BF16], ids=lambda t: t.name)
def test_float_types_are_reinterpreted(qtype):
    values = torch.randn(5, 8)
    stored = values.to({GGMLType.F32: torch.float32, GGMLType.F16: torch.float16, GGMLType.BF16: torch.bfloat16}[qtype])
    raw = stored.view(torch.uint8)
    expected = reference(raw.numpy(), qtype).reshape(5, 8) if qtype != GGMLType.F32 else stored.numpy()

    ours = dequantize(raw, qtype, (5, 8))

    np.testing.assert_array_equal(ours.numpy(), expected)
    assert torch.equal(ours, stored.float())


def test_five_dimensional_f32_tensors_keep_their_shape():
    weight = torch.randn(8, 16, 1, 2, 2)  # img_in.proj.weight at a tiny width
    assert torch.equal(dequantize(weight.view(torch.uint8), "F32", weight.shape), weight)


@pytest.mark.parametrize("value, name", [(9, "Q8_1"), (23, "IQ4_XS"), ("TQ1_0", "TQ1_0"), (16, "IQ2_XXS")])
def test_other_types_are_refused_by_name(value, name):
    with pytest.raises(UnsupportedQuantTypeError, match=rf"\b{name}\b.*not supported.*Q4_K"):
        ggml_type(value)
    with pytest.raises(UnsupportedQuantTypeError, match=name):
        dequantize(torch.zeros(34, dtype=torch.uint8), value, (32,))


def test_names_ids_and_gguf_enums_all_resolve():
    assert ggml_type("Q4_K") is ggml_type(12) is ggml_type(gguf.GGMLQuantizationType.Q4_K) is GGMLType.Q4_K


def test_a_byte_count_that_does_not_fit_the_shape_is_an_error():
    with pytest.raises(ValueError, match=r"34 bytes of Q8_0 data cannot hold a tensor of shape \[64\]"):
        dequantize(torch.zeros(34, dtype=torch.uint8), GGMLType.Q8_0, (64,))
