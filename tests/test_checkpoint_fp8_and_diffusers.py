"""Tencent FP8 scale maps (found, attached, refused) and diffusers folders with on-the-fly key conversion."""

import json

import pytest
import torch
from checkpoint_files import tencent_state_dict, write_diffusers

from hunyuanvideo_pack.hunyuan_model.checkpoint import (
    CheckpointError,
    ConvertedReader,
    CorruptCheckpointError,
    FolderReader,
    MissingScaleMapError,
    SafetensorsReader,
    TorchReader,
    WrongModelError,
    key_group,
    load_scale_map,
    needs_scale_map,
    open_checkpoint,
    with_scale_map,
)
from hunyuanvideo_pack.hunyuan_model.quant import cast_to_fp8
from hunyuanvideo_pack.hunyuan_model.tiny.dit_files import fp8_release_tensors, write_safetensors


@pytest.fixture(scope="module")
def state():
    return tencent_state_dict()


@pytest.fixture
def tencent_release(tmp_path, state):
    """``mp_rank_00_model_states_fp8.pt`` + ``..._fp8_map.pt`` as Tencent ships them."""
    weights, scales = fp8_release_tensors(state)
    path = tmp_path / "mp_rank_00_model_states_fp8.pt"
    torch.save({"module": weights}, path)
    torch.save(scales, tmp_path / "mp_rank_00_model_states_fp8_map.pt")
    return path, scales


# ---------------------------------------------------------------------------------------------
# FP8 scale maps


def test_the_map_beside_the_weights_is_found_and_applied(tencent_release, state):
    path, scales = tencent_release
    reader = TorchReader(path)
    assert needs_scale_map(reader)

    scaled = with_scale_map(reader)

    assert "scale map 'mp_rank_00_model_states_fp8_map.pt'" in scaled.describe()
    assert scaled.infos()["double_blocks.0.img_attn_qkv.weight"].storage == "float8_e4m3fn scaled"
    assert scaled.infos()["double_blocks.0.img_attn_qkv.bias"].storage == "bfloat16"
    stored = scaled.load("double_blocks.0.img_attn_qkv.weight")
    # Tencent's forward: W = W8.to(bf16) * scale.to(bf16).
    expected = stored.data.to(torch.bfloat16) * scales["double_blocks.0.img_attn_qkv"].to(torch.bfloat16)
    assert torch.equal(stored.dense(torch.bfloat16), expected)
    original = state["double_blocks.0.img_attn_qkv.weight"].float()
    assert (stored.dense(torch.float32) - original).abs().max() <= original.abs().max() / 16
    assert torch.equal(scaled.load("img_in.proj.weight").data, state["img_in.proj.weight"])


def test_without_its_map_an_fp8_file_is_refused_with_the_searched_paths(tencent_release):
    path, _ = tencent_release
    (path.parent / "mp_rank_00_model_states_fp8_map.pt").unlink()
    with pytest.raises(MissingScaleMapError) as caught:
        with_scale_map(TorchReader(path))
    message = str(caught.value)
    assert "gives noise" in message
    for name in (
        "mp_rank_00_model_states_fp8_map.pt",
        "mp_rank_00_model_states_fp8_map.safetensors",
        "fp8_map.safetensors",
    ):
        assert str(path.parent / name) in message
    assert path.parent / "fp8_map.safetensors" in caught.value.searched


def test_kijais_safetensors_map_and_an_explicit_map_work(tencent_release, tmp_path):
    path, scales = tencent_release
    (path.parent / "mp_rank_00_model_states_fp8_map.pt").unlink()
    write_safetensors(scales, tmp_path / "fp8_map.safetensors")
    assert (
        with_scale_map(TorchReader(path)).load("single_blocks.0.linear2.weight").scale
        == scales["single_blocks.0.linear2"]
    )
    elsewhere = tmp_path / "maps" / "hunyuan_scales.pt"
    elsewhere.parent.mkdir()
    torch.save(scales, elsewhere)
    assert "scale map 'hunyuan_scales.pt'" in with_scale_map(TorchReader(path), elsewhere).describe()


def test_plain_cast_fp8_files_need_no_map(tmp_path, state):
    tensors = {
        k: cast_to_fp8(v) if "blocks" in k and k.endswith("weight") and "norm" not in k else v for k, v in state.items()
    }
    reader = SafetensorsReader(write_safetensors(tensors, tmp_path / "hunyuan_video_720_fp8_e4m3fn.safetensors"))
    assert not needs_scale_map(reader)
    assert not needs_scale_map(SafetensorsReader(write_safetensors(state, tmp_path / "bf16.safetensors")))


def test_a_map_from_another_file_is_refused(tencent_release, tmp_path):
    path, scales = tencent_release
    other = {**scales, "double_blocks.7.img_attn_qkv": torch.tensor([0.001])}
    del other["single_blocks.0.linear2"]
    torch.save(other, tmp_path / "other_map.pt")
    with pytest.raises(
        CheckpointError,
        match=r"does not belong to .*1 FP8 layers have no scale .*single_blocks.0.linear2.*1 scales have no FP8 layer",
    ):
        with_scale_map(TorchReader(path), tmp_path / "other_map.pt")


def test_a_weights_file_chosen_as_map_is_refused(tencent_release):
    path, _ = tencent_release
    with pytest.raises(
        WrongModelError,
        match=r"is not an FP8 scale map: it is a HunyuanVideo .*; choose it as model_name\. '\S+' holds",
    ):
        load_scale_map(path)


def test_scale_values_are_checked(tmp_path):
    torch.save({"double_blocks.0.img_attn_qkv": torch.tensor([float("nan")])}, tmp_path / "bad_map.pt")
    with pytest.raises(CheckpointError, match="the scale of 'double_blocks.0.img_attn_qkv' is nan"):
        load_scale_map(tmp_path / "bad_map.pt")


# ---------------------------------------------------------------------------------------------
# diffusers


def to_diffusers(state):
    """A stand-in for the DiT's converter, run backwards: Tencent -> diffusers names for our tiny dict."""
    q, k, v = state["double_blocks.0.img_attn_qkv.weight"].chunk(3)
    bq, bk, bv = state["double_blocks.0.img_attn_qkv.bias"].chunk(3)
    shift, scale = torch.randn(2, 8).bfloat16()
    return {
        "x_embedder.proj.weight": state["img_in.proj.weight"],
        "transformer_blocks.0.attn.to_q.weight": q,
        "transformer_blocks.0.attn.to_k.weight": k,
        "transformer_blocks.0.attn.to_v.weight": v,
        "transformer_blocks.0.attn.to_q.bias": bq,
        "transformer_blocks.0.attn.to_k.bias": bk,
        "transformer_blocks.0.attn.to_v.bias": bv,
        "single_transformer_blocks.0.proj_out.weight": state["single_blocks.0.linear2.weight"],
        "norm_out.linear.weight": torch.cat([scale, shift]),
    }


def diffusers_to_tencent(sd):
    """The converter contract: pure torch, local to a key group (it also runs on meta tensors)."""
    out = {}
    for key, value in sd.items():
        if key == "x_embedder.proj.weight":
            out["img_in.proj.weight"] = value
        elif key.startswith("transformer_blocks.") and ".to_q." in key:
            index, leaf = key.split(".")[1], key.rsplit(".", 1)[1]
            parts = [sd[key.replace("to_q", name)] for name in ("to_q", "to_k", "to_v")]
            out[f"double_blocks.{index}.img_attn_qkv.{leaf}"] = torch.cat(parts)
        elif key.startswith("single_transformer_blocks.") and ".proj_out." in key:
            out[f"single_blocks.{key.split('.')[1]}.linear2.{key.rsplit('.', 1)[1]}"] = value
        elif key == "norm_out.linear.weight":
            scale, shift = value.chunk(2)
            out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale])
    return out


def test_key_groups_are_blocks_or_top_level_modules():
    assert key_group("transformer_blocks.3.attn.to_q.weight") == "transformer_blocks.3"
    assert (
        key_group("context_embedder.token_refiner.refiner_blocks.0.norm1.weight")
        == "context_embedder.token_refiner.refiner_blocks.0"
    )
    assert key_group("norm_out.linear.weight") == "norm_out"


@pytest.mark.parametrize("shards", [1, 3])
def test_diffusers_folders_convert_to_tencent_keys_lazily(tmp_path, state, shards):
    diffusers_state = to_diffusers(state)
    write_diffusers(tmp_path / "HunyuanVideo" / "transformer", diffusers_state, shards=shards)
    (tmp_path / "HunyuanVideo" / "model_index.json").write_text(json.dumps({"_class_name": "HunyuanVideoPipeline"}))
    diffusers = open_checkpoint(tmp_path / "HunyuanVideo")
    assert isinstance(diffusers, FolderReader) and diffusers.config["num_layers"] == 1
    calls = []

    def counting(sd):
        calls.append(next(iter(sd.values())).device.type)
        return diffusers_to_tencent(sd)

    reader = ConvertedReader(diffusers, counting)

    assert set(calls) == {"meta"}  # shapes came from a meta run: no data read yet
    assert reader.infos()["double_blocks.0.img_attn_qkv.weight"].shape == (768, 256)
    assert reader.infos()["double_blocks.0.img_attn_qkv.weight"].storage == "bfloat16"
    calls.clear()
    for key in reader.keys():
        reader.load(key)
        reader.release(key)
    assert calls == ["cpu"] * 4  # each of the four key groups converted once
    assert torch.equal(
        reader.load("double_blocks.0.img_attn_qkv.weight").data, state["double_blocks.0.img_attn_qkv.weight"]
    )
    assert torch.equal(
        reader.load("double_blocks.0.img_attn_qkv.bias").data, state["double_blocks.0.img_attn_qkv.bias"]
    )
    assert torch.equal(reader.load("single_blocks.0.linear2.weight").data, state["single_blocks.0.linear2.weight"])
    swapped = reader.load("final_layer.adaLN_modulation.1.weight").data
    assert torch.equal(swapped, diffusers_state["norm_out.linear.weight"].roll(8, 0))


def test_a_single_diffusers_file_converts_the_same_way(tmp_path, state):
    path = write_safetensors(to_diffusers(state), tmp_path / "hunyuan_video_diffusers.safetensors")
    reader = ConvertedReader(open_checkpoint(path), diffusers_to_tencent)
    assert torch.equal(reader.load("img_in.proj.weight").data, state["img_in.proj.weight"])


def test_broken_diffusers_folders_are_reported(tmp_path, state):
    folder = write_diffusers(tmp_path / "sharded", to_diffusers(state), shards=2)
    next(folder.glob("*-00002-of-00002.safetensors")).unlink()
    with pytest.raises(
        CorruptCheckpointError,
        match="lists shard 'diffusion_pytorch_model-00002-of-00002.safetensors', which is missing",
    ):
        FolderReader(folder)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(CorruptCheckpointError, match="diffusion_pytorch_model.bin' is truncated or damaged"):
        FolderReader(pickled)


def test_a_converter_that_mixes_groups_is_caught(tmp_path, state):
    folder = write_diffusers(tmp_path / "t", to_diffusers(state))
    with pytest.raises(CheckpointError, match="produced 'everything' from two key groups"):
        ConvertedReader(FolderReader(folder), lambda sd: {"everything": next(iter(sd.values()))})
