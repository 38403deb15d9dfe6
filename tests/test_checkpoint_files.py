"""Readers for safetensors, PyTorch and GGUF files: keys, shapes before data, zero-copy loads, damage reports."""

import os
import pickle
import warnings
import zipfile

import gguf
import numpy as np
import psutil
import pytest
import torch
from checkpoint_files import random_blocks, tencent_state_dict, write_gguf

from hunyuanvideo_pack.hunyuan_model.checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    GGUFReader,
    SafetensorsReader,
    TensorInfo,
    TorchReader,
    UnsafeCheckpointError,
    WrongModelError,
    open_checkpoint,
    sniff_format,
)
from hunyuanvideo_pack.hunyuan_model.quant import GGMLType, UnsupportedQuantTypeError, dequantize
from hunyuanvideo_pack.hunyuan_model.tiny.dit_files import write_safetensors


@pytest.fixture(scope="module")
def state():
    return tencent_state_dict()


# ---------------------------------------------------------------------------------------------
# safetensors


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model.", "diffusion_model.", "model."])
def test_safetensors_keys_lose_their_prefix_and_load_as_views(tmp_path, state, prefix):
    reader = SafetensorsReader(write_safetensors(state, tmp_path / "dit.safetensors", prefix))

    assert reader.prefix == prefix and sorted(reader.keys()) == sorted(state)
    assert reader.infos()["img_in.proj.weight"].shape == (256, 16, 1, 2, 2)
    assert reader.infos()["final_layer.linear.weight"].storage == "float32"
    for key, expected in state.items():
        stored = reader.load(key)
        assert stored.scale is None and stored.data.dtype == expected.dtype
        assert torch.equal(stored.data, expected)
    # Two loads see the same bytes: views of one mapping, not copies.
    assert (
        reader.load("txt_in.input_embedder.weight").data.data_ptr()
        == reader.load("txt_in.input_embedder.weight").data.data_ptr()
    )


def test_a_bundle_keeps_only_the_diffusion_model(tmp_path, state):
    tensors = {
        **{f"model.diffusion_model.{k}": v for k, v in state.items()},
        "first_stage_model.decoder.conv_in.weight": torch.zeros(3),
    }
    reader = SafetensorsReader(write_safetensors(tensors, tmp_path / "bundle.safetensors"))
    assert sorted(reader.keys()) == sorted(state)
    assert "1 tensors outside the prefix ignored, e.g. 'first_stage_model.decoder.conv_in.weight'" in reader.describe()


def test_comfyui_scaled_fp8_files_carry_their_scales(tmp_path, state):
    weight = state["double_blocks.0.img_attn_qkv.weight"].float()
    scale = weight.abs().max() / 448
    tensors = {
        **state,
        "double_blocks.0.img_attn_qkv.weight": (weight / scale).to(torch.float8_e4m3fn),
        "double_blocks.0.img_attn_qkv.scale_weight": scale,
        "double_blocks.0.img_attn_qkv.scale_input": torch.tensor(1.0),
        "scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn),
    }
    reader = SafetensorsReader(write_safetensors(tensors, tmp_path / "scaled.safetensors", "model.diffusion_model."))

    assert reader.scaled_fp8 and sorted(reader.keys()) == sorted(state)
    assert "ComfyUI scaled FP8 (F8_E4M3)" in reader.describe()
    assert reader.infos()["double_blocks.0.img_attn_qkv.weight"].storage == "float8_e4m3fn scaled"
    stored = reader.load("double_blocks.0.img_attn_qkv.weight")
    assert stored.scale == scale
    assert (stored.dense(torch.float32) - weight).abs().max() <= weight.abs().max() / 16


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.float16])
def test_narrow_storage_dtypes_are_reported_and_kept(tmp_path, state, dtype):
    tensors = {key: value.to(dtype) if "blocks" in key else value for key, value in state.items()}
    reader = SafetensorsReader(write_safetensors(tensors, tmp_path / "narrow.safetensors"))
    assert reader.infos()["single_blocks.0.linear2.weight"].storage == str(dtype).removeprefix("torch.")
    assert reader.load("single_blocks.0.linear2.weight").data.dtype == dtype


def test_truncated_safetensors_name_the_tensor_that_runs_past_the_end(tmp_path, state):
    path = write_safetensors(state, tmp_path / "dit.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(
        CorruptCheckpointError, match=r"is truncated: tensor '\S+' ends at byte \d+ but the file has \d+ bytes"
    ):
        SafetensorsReader(path)
    path.write_bytes(data[:200])
    with pytest.raises(CorruptCheckpointError, match="truncated or not a safetensors file: its header claims"):
        SafetensorsReader(path)
    path.write_bytes(data[:8] + b"[" + data[9:])
    with pytest.raises(CorruptCheckpointError, match="damaged safetensors header"):
        SafetensorsReader(path)


def test_released_pages_leave_memory_and_read_back_from_the_file(tmp_path):
    tensor = torch.randn(8 * 1024 * 1024)  # 32 MiB
    reader = SafetensorsReader(write_safetensors({"w": tensor}, tmp_path / "big.safetensors"))
    process = psutil.Process(os.getpid())

    view = reader.load("w").data
    assert torch.equal(view, tensor)  # touches every page
    before = process.memory_info().rss
    reader.release("w")
    after = process.memory_info().rss

    if os.uname().sysname == "Linux":
        assert before - after > 24 * 2**20
    assert torch.equal(view, tensor)


# ---------------------------------------------------------------------------------------------
# PyTorch .pt


@pytest.mark.parametrize("wrapper", [None, "module", "state_dict", "model"])
def test_torch_files_unwrap_and_say_what_they_found(tmp_path, state, wrapper):
    path = tmp_path / "mp_rank_00_model_states.pt"
    torch.save(state if wrapper is None else {wrapper: state, "other": 1}, path)
    reader = TorchReader(path)

    assert reader.wrapper == wrapper and reader.memory_mapped
    assert ("bare state dict" if wrapper is None else f"state dict under '{wrapper}'") in reader.describe()
    assert reader.keys() == list(state)
    assert all(torch.equal(reader.load(key).data, value) for key, value in state.items())


def test_ema_weights_load_on_request_only(tmp_path, state):
    ema = {key: value + 1 for key, value in state.items()}
    path = tmp_path / "states.pt"
    torch.save({"module": state, "ema": ema}, path)
    assert torch.equal(TorchReader(path).load("img_in.proj.bias").data, state["img_in.proj.bias"])
    assert torch.equal(TorchReader(path, load_key="ema").load("img_in.proj.bias").data, ema["img_in.proj.bias"])
    torch.save({"module": state}, path)
    with pytest.raises(CheckpointError, match="has no 'ema' state dict; its top-level keys are 'module'"):
        TorchReader(path, load_key="ema")


class NotATensor:
    """A class a malicious pickle could make torch.load construct."""


def test_pickles_that_need_code_are_refused(tmp_path, state):
    path = tmp_path / "evil.pt"
    torch.save({"module": state, "extra": NotATensor()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"needs code to load \(it references \S*NotATensor\)"):
        TorchReader(path)


def test_damaged_torch_files_name_the_damage(tmp_path, state):
    path = tmp_path / "dit.pt"
    torch.save({"module": state}, path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError, match="truncated or damaged: the zip directory"):
        TorchReader(truncated)
    missing = tmp_path / "missing.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(missing, "w") as target:
        for name in source.namelist():
            if not name.endswith("/data/1"):
                target.writestr(name, source.read(name))
    with pytest.raises(CorruptCheckpointError, match="record 'data/1' is missing"):
        TorchReader(missing)


def test_legacy_torch_files_load_without_mmap(tmp_path, state):
    path = tmp_path / "legacy.pth"
    torch.save({"module": state}, path, _use_new_zipfile_serialization=False)
    reader = TorchReader(path)
    assert not reader.memory_mapped and "legacy (non-zip) format" in reader.describe()
    assert torch.equal(reader.load("img_in.proj.weight").data, state["img_in.proj.weight"])
    reader.release("img_in.proj.weight")  # must not touch anonymous memory
    assert torch.equal(reader.load("img_in.proj.weight").data, state["img_in.proj.weight"])


# ---------------------------------------------------------------------------------------------
# GGUF


def gguf_tensors(state):
    """As city96 lays out HunyuanVideo: quantized 2-D block weights, F32 small/5-D tensors."""
    return {
        "img_in.proj.weight": state["img_in.proj.weight"].float().numpy(),
        "img_in.proj.bias": state["img_in.proj.bias"].float().numpy(),
        "txt_in.input_embedder.weight": state["txt_in.input_embedder.weight"].half().numpy(),
        "double_blocks.0.img_attn_qkv.weight": (random_blocks("Q4_K", (768, 256)), "Q4_K"),
        "single_blocks.0.linear2.weight": (
            gguf.quants.quantize(
                state["single_blocks.0.linear2.weight"].float().numpy(), gguf.GGMLQuantizationType.Q8_0
            ),
            "Q8_0",
        ),
        "final_layer.linear.weight": (
            gguf.quants.quantize(state["final_layer.linear.weight"].numpy(), gguf.GGMLQuantizationType.BF16),
            "BF16",
        ),
    }


def test_gguf_tensors_keep_logical_shapes_and_stay_quantized(tmp_path, state):
    tensors = gguf_tensors(state)
    reader = GGUFReader(
        write_gguf(tmp_path / "hunyuan-video-q4_k.gguf", {f"model.diffusion_model.{k}": v for k, v in tensors.items()})
    )

    assert reader.architecture == "hyvid" and reader.prefix == "model.diffusion_model."
    infos = reader.infos()
    assert infos["img_in.proj.weight"] == TensorInfo((256, 16, 1, 2, 2), "float32")
    assert infos["double_blocks.0.img_attn_qkv.weight"] == TensorInfo((768, 256), "Q4_K")
    assert infos["final_layer.linear.weight"] == TensorInfo((64, 256), "bfloat16")
    img_in = reader.load("img_in.proj.weight")
    assert img_in.qtype is None and torch.equal(img_in.data, state["img_in.proj.weight"].float())
    qkv = reader.load("double_blocks.0.img_attn_qkv.weight")
    assert qkv.qtype is GGMLType.Q4_K and qkv.data.dtype == torch.uint8 and qkv.shape == (768, 256)
    blocks = tensors["double_blocks.0.img_attn_qkv.weight"][0]
    expected = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q4_K)
    np.testing.assert_array_equal(qkv.dense(torch.float32).numpy(), expected)
    assert torch.equal(reader.load("final_layer.linear.weight").data, state["final_layer.linear.weight"].bfloat16())
    assert torch.equal(reader.load("txt_in.input_embedder.weight").data, state["txt_in.input_embedder.weight"].half())


def test_gguf_original_shape_fields_override_the_stored_shape(tmp_path):
    weight = np.arange(256 * 3, dtype=np.float32).reshape(3, 256)
    path = write_gguf(tmp_path / "reshaped.gguf", {"w": weight}, extra_fields={"comfy.gguf.orig_shape.w": [768]})
    stored = GGUFReader(path).load("w")
    assert stored.shape == (768,) and torch.equal(stored.data, torch.from_numpy(weight.reshape(-1)))


@pytest.mark.parametrize(
    "architecture, found, advice",
    [
        ("flux", "a FLUX image model", "$"),
        (
            "llama",
            "a Llama language model",
            r" Load it with HunyuanVideo Text Encoder Loader \(HunyuanVideoTextEncoderLoader\)",
        ),
        ("mamba", "another model family", "$"),
    ],
)
def test_gguf_of_another_model_family_is_refused(tmp_path, architecture, found, advice):
    path = write_gguf(tmp_path / "other.gguf", {"w": np.zeros((2, 32), np.float32)}, architecture=architecture)
    with pytest.raises(
        WrongModelError,
        match=rf"architecture '{architecture}', {found}.*needs a HunyuanVideo text-to-video transformer \(DiT\) as GGUF \(architecture 'hyvid'\)\."
        + advice,
    ):
        GGUFReader(path)


def test_gguf_without_architecture_is_read(tmp_path):
    reader = GGUFReader(write_gguf(tmp_path / "bare.gguf", {"w": np.zeros((2, 32), np.float32)}, architecture=None))
    assert reader.architecture is None and "no architecture field" in reader.describe()


def test_unsupported_gguf_types_are_refused_by_name(tmp_path):
    blocks = np.zeros((4, 256 // 32 * 40), np.uint8)  # Q8_1: 40 bytes per 32 weights
    path = write_gguf(tmp_path / "q8_1.gguf", {"double_blocks.0.img_attn_qkv.weight": (blocks, "Q8_1")})
    with pytest.raises(
        UnsupportedQuantTypeError, match=r"uses GGUF tensor type Q8_1 \(e.g. 'double_blocks.0.img_attn_qkv.weight'\)"
    ):
        GGUFReader(path)


def test_truncated_gguf_names_the_tensor(tmp_path, state):
    path = write_gguf(tmp_path / "dit.gguf", gguf_tensors(state))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(
        CorruptCheckpointError, match=r"is truncated: tensor '\S+' ends at byte \d+ but the file has \d+ bytes"
    ):
        GGUFReader(path)
    path.write_bytes(data[:100])
    with pytest.raises(CorruptCheckpointError, match="GGUF header or tensor table cannot be read"):
        GGUFReader(path)


def test_gguf_dense_matches_our_dequantize_of_the_mapped_bytes(tmp_path, state):
    reader = GGUFReader(write_gguf(tmp_path / "dit.gguf", gguf_tensors(state)))
    stored = reader.load("single_blocks.0.linear2.weight")
    assert torch.equal(stored.dense(torch.bfloat16), dequantize(stored.data, "Q8_0", (256, 512), torch.bfloat16))
    assert (stored.dense(torch.float32) - state["single_blocks.0.linear2.weight"].float()).abs().max() < 0.01


# ---------------------------------------------------------------------------------------------
# Format from contents


def test_formats_are_recognized_from_contents_not_names(tmp_path, state):
    safetensors_named_pt = write_safetensors(state, tmp_path / "model.pt")
    gguf_named_safetensors = write_gguf(tmp_path / "model.safetensors", gguf_tensors(state))
    torch_named_gguf = tmp_path / "model.gguf"
    torch.save({"module": state}, torch_named_gguf)

    assert sniff_format(safetensors_named_pt) == "safetensors"
    assert sniff_format(gguf_named_safetensors) == "gguf"
    assert sniff_format(torch_named_gguf) == "torch"
    assert isinstance(open_checkpoint(safetensors_named_pt), SafetensorsReader)
    assert isinstance(open_checkpoint(gguf_named_safetensors), GGUFReader)
    assert isinstance(open_checkpoint(torch_named_gguf), TorchReader)


def test_files_of_no_known_format_are_reported(tmp_path):
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"<html>not found</html>")
    with pytest.raises(
        CorruptCheckpointError, match=r"not a model file this pack reads .* 22 bytes starting with b'<html>not'"
    ):
        open_checkpoint(junk)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="0 bytes"):
        open_checkpoint(empty)
    with pytest.raises(CorruptCheckpointError, match=r"model.safetensors' is not a model file"):
        open_checkpoint(tmp_path)  # a folder of weight files: its damaged shard is named
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CheckpointError, match="folder without a config.json or weight files"):
        open_checkpoint(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError):
        open_checkpoint(tmp_path / "absent.safetensors")


def test_a_pickle_stream_is_sniffed_as_torch(tmp_path):
    path = tmp_path / "old.bin"
    path.write_bytes(pickle.dumps({"w": 1}, protocol=2))
    assert sniff_format(path) == "torch"


def test_read_only_mappings_serve_windows_without_warnings(tmp_path, state, monkeypatch):
    from hunyuanvideo_pack.hunyuan_model.checkpoint import gguf_file, safetensors_file

    monkeypatch.setattr(safetensors_file, "PRIVATE_MAPPING", False)
    monkeypatch.setattr(gguf_file, "PRIVATE_MAPPING", False)
    safetensors_path = write_safetensors(state, tmp_path / "dit.safetensors")
    gguf_path = write_gguf(tmp_path / "dit.gguf", gguf_tensors(state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = SafetensorsReader(safetensors_path).load("img_in.proj.weight").data
        quantized = GGUFReader(gguf_path).load("single_blocks.0.linear2.weight")
    assert torch.equal(loaded, state["img_in.proj.weight"])
    assert quantized.dense(torch.float32).shape == (256, 512)
