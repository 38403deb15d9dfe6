"""LoRA files of every convention: all encode the same change and give the output of merging
W + s * (alpha / r) * B @ A into the weights by hand; diffusers' own load_lora_weights + fuse_lora
agrees; every key is accounted for; other families and damaged files are named."""

from __future__ import annotations

import copy

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.checkpoint import CheckpointError, CorruptCheckpointError, WrongModelError
from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights
from hunyuanvideo_pack.hunyuan_model.lora import AppliedLora, apply_loras, linear_shapes, parse_lora, read_lora
from hunyuanvideo_pack.hunyuan_model.lora.factors import low_rank
from hunyuanvideo_pack.hunyuan_model.tiny import dit_files as dit_tiny
from hunyuanvideo_pack.hunyuan_model.tiny import lora_files as lora_tiny

CONFIG = DiTConfig.tiny(double_blocks=2, single_blocks=2)
FP32_BOUND = 1e-5  # of the output's max magnitude; measured about 1e-6 (summation order)
STRENGTH = 0.7


@pytest.fixture(scope="module")
def model() -> HunyuanVideoTransformer:
    return init_random_weights(HunyuanVideoTransformer(CONFIG, dtype=torch.float32), seed=4).eval()


@pytest.fixture(scope="module")
def shapes(model):
    return linear_shapes(model)


@pytest.fixture(scope="module")
def factors(shapes):
    return lora_tiny.random_factors(shapes, rank=4, alpha=2.0, seed=5)


@pytest.fixture(scope="module")
def inputs() -> dict:
    g = torch.Generator().manual_seed(6)
    return dict(
        latents=torch.randn(1, 16, 2, 8, 8, generator=g),
        timestep=torch.tensor([600.0]),
        text_states=torch.randn(1, 9, CONFIG.text_dim, generator=g),
        text_mask=None,
        pooled_text=torch.randn(1, CONFIG.pooled_dim, generator=g),
        guidance=6.0,
    )


def merged_by_hand(model, factors, strength: float, modules=None) -> HunyuanVideoTransformer:
    merged = copy.deepcopy(model)
    with torch.no_grad():
        for name in modules or factors:
            merged.get_submodule(name).weight += strength * lora_tiny.delta(factors, name)
    return merged


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def reference(model, factors, inputs):
    return merged_by_hand(model, factors, STRENGTH)(**inputs)


# Every convention merged; on the fly for the split (diffusers) and the widest (LoKr) pairs, the same rule otherwise.
CASES = [(c, "merge") for c in lora_tiny.CONVENTIONS] + [("diffusers", "on_the_fly"), ("lokr", "on_the_fly")]


@pytest.mark.parametrize("convention, mode", CASES)
def test_every_convention_gives_the_hand_merged_output(model, shapes, factors, inputs, reference, convention, mode):
    tensors = lora_tiny.lora_tensors(factors, convention)
    lora = parse_lora(tensors, shapes, f"{convention}.safetensors")
    assert lora.unmatched == {} and lora.matched_keys == len(tensors)
    assert {t.target.module for t in lora.terms} == set(shapes)  # every Linear, refiner and head included
    out = apply_loras(model, [AppliedLora(lora, STRENGTH)], mode)(**inputs)
    assert rel(out, reference) < FP32_BOUND, convention
    base_out = model(**inputs)
    assert rel(out, base_out) > 0.05  # the change matters at this bound


def test_conventions_are_named_in_the_summary(shapes, factors):
    expected = {
        "diffusion_pipe": "diffusion-pipe / ComfyUI",
        "comfyui_internal": "ComfyUI",
        "musubi": "musubi-tuner / kohya",
        "diffusers": "diffusers / peft",
        "onetrainer": "OneTrainer",
        "tencent_i2v": "Tencent HunyuanVideo-I2V",
        "loha": "LoHa",
        "lokr": "LoKr",
    }
    for convention, name in expected.items():
        lora = parse_lora(lora_tiny.lora_tensors(factors, convention), shapes, "x.safetensors")
        assert name in lora.summary(), convention
    i2v = parse_lora(lora_tiny.lora_tensors(factors, "tencent_i2v"), shapes, "x")
    assert "HunyuanVideo-I2V trainer" in i2v.summary()


def test_files_on_disk_read_through_the_checkpoint_readers(tmp_path, model, shapes, factors, inputs, reference):
    for convention, dtype in (("musubi", torch.bfloat16), ("diffusion_pipe", torch.float32)):
        path = lora_tiny.write_lora(lora_tiny.lora_tensors(factors, convention, dtype), tmp_path / f"{convention}.sft")
        lora = read_lora(path, shapes)
        assert rel(apply_loras(model, [AppliedLora(lora, STRENGTH)])(**inputs), reference) < FP32_BOUND
    pt = tmp_path / "i2v.pt"
    torch.save(lora_tiny.lora_tensors(factors, "tencent_i2v"), pt)
    assert read_lora(pt, shapes).matched_keys == len(lora_tiny.lora_tensors(factors, "tencent_i2v"))


def test_unmatched_keys_are_listed_by_name_with_the_counts(shapes, factors):
    tensors = lora_tiny.lora_tensors({k: factors[k] for k in ("double_blocks.0.img_attn_qkv",)}, "musubi")
    tensors["lora_unet_double_blocks_7_img_attn_qkv.lora_down.weight"] = torch.zeros(4, 256)
    tensors["lora_unet_double_blocks_7_img_attn_qkv.lora_up.weight"] = torch.zeros(768, 4)
    tensors["lora_unet_double_blocks_1_img_attn_proj.dora_scale"] = torch.zeros(1, 256)
    tensors["lora_unet_double_blocks_1_img_attn_proj.lora_up.weight"] = torch.zeros(256, 4)
    tensors["some_step_counter"] = torch.tensor(3)
    lora = parse_lora(tensors, shapes, "mixed.safetensors")
    text = lora.summary()
    assert f"3/{len(tensors)} keys matched, 1 layers changed" in text
    for key in (
        "lora_unet_double_blocks_7_img_attn_qkv.lora_down.weight",
        "some_step_counter",
        "lora_unet_double_blocks_1_img_attn_proj.dora_scale",
    ):
        assert key in lora.unmatched and key in text
    assert "DoRA" in lora.unmatched["lora_unet_double_blocks_1_img_attn_proj.dora_scale"]


def _flux_like(prefix: str) -> dict:
    return {
        f"{prefix}double_blocks_0_img_mod_lin.lora_down.weight": torch.zeros(4, 256),
        f"{prefix}double_blocks_0_img_mod_lin.lora_up.weight": torch.zeros(1536, 4),
        f"{prefix}single_blocks_3_modulation_lin.lora_down.weight": torch.zeros(4, 256),
        f"{prefix}single_blocks_3_modulation_lin.lora_up.weight": torch.zeros(768, 4),
    }


@pytest.mark.parametrize(
    "tensors, family",
    [
        (_flux_like("lora_unet_"), "FLUX"),
        ({"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 8)}, "Wan"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}, "Stable Diffusion"),
        ({"lora_unet_double_blocks_0_img_attn_q.lora_down.weight": torch.zeros(4, 8)}, "HunyuanVideo 1.5"),
        ({"transformer.foo.bar.lora_A.weight": torch.zeros(4, 8)}, "made for another model"),
    ],
)
def test_loras_for_other_models_are_named(shapes, tensors, family):
    with pytest.raises(WrongModelError, match=family):
        parse_lora(tensors, shapes, "other.safetensors")


def test_a_comfyui_named_lora_for_every_block_is_hunyuan_not_flux(model, shapes, factors, inputs, reference):
    tensors = lora_tiny.lora_tensors(factors, "comfyui_internal")
    config = DiTConfig.tiny(double_blocks=20, single_blocks=40)  # FLUX has 19 + 38
    deep = linear_shapes(HunyuanVideoTransformer(config, dtype=torch.float32, device="meta"))
    deep_factors = lora_tiny.random_factors({k: v for k, v in deep.items() if "blocks.19" in k or "blocks.39" in k})
    deep_tensors = lora_tiny.lora_tensors(deep_factors, "comfyui_internal")
    assert parse_lora(tensors | deep_tensors, deep, "comfy.safetensors").unmatched == {}
    with pytest.raises(WrongModelError, match="FLUX"):  # the same names on FLUX's blocks only
        parse_lora({k: v for k, v in tensors.items() if "_blocks." in k}, shapes, "flux.safetensors")


def test_a_model_file_or_a_damaged_lora_gets_the_checkpoint_errors(tmp_path, model, shapes, factors):
    dit = dit_tiny.write_safetensors(dit_tiny.release_state_dict(model), tmp_path / "dit.safetensors")
    with pytest.raises(WrongModelError, match="not a LoRA: it looks like a HunyuanVideo text-to-video transformer"):
        read_lora(dit, shapes)
    path = lora_tiny.write_lora(lora_tiny.lora_tensors(factors, "musubi"), tmp_path / "cut.safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptCheckpointError):
        read_lora(path, shapes)
    bad = lora_tiny.lora_tensors({"double_blocks.0.img_attn_proj": factors["double_blocks.0.img_attn_proj"]}, "musubi")
    bad["lora_unet_double_blocks_0_img_attn_proj.lora_up.weight"] = torch.zeros(256, 8)
    with pytest.raises(CheckpointError, match="rank mismatch"):
        parse_lora(bad, shapes, "bad.safetensors")
    wide = {"transformer.double_blocks.0.img_attn_proj.lora_A.weight": torch.zeros(4, 3072)}
    wide["transformer.double_blocks.0.img_attn_proj.lora_B.weight"] = torch.zeros(3072, 4)
    with pytest.raises(WrongModelError, match="another HunyuanVideo size"):
        parse_lora(wide, shapes, "released.safetensors")


def test_loha_and_lokr_factors_are_exact():
    g = torch.Generator().manual_seed(7)
    w1a, w1b, w2a, w2b = (torch.randn(s, generator=g) for s in ((12, 3), (3, 10), (12, 3), (3, 10)))
    loha = low_rank(
        {"hada_w1_a": w1a, "hada_w1_b": w1b, "hada_w2_a": w2a, "hada_w2_b": w2b, "alpha": torch.tensor(6.0)}
    )
    assert torch.allclose(loha.up @ loha.down * loha.scale, (w1a @ w1b) * (w2a @ w2b) * 2, atol=1e-5)
    w1, v2a, v2b = torch.randn(3, 2, generator=g), torch.randn(4, 2, generator=g), torch.randn(2, 5, generator=g)
    lokr = low_rank({"lokr_w1": w1, "lokr_w2_a": v2a, "lokr_w2_b": v2b, "alpha": torch.tensor(1.0)})
    assert torch.allclose(lokr.up @ lokr.down * lokr.scale, torch.kron(w1, v2a @ v2b) / 2, atol=1e-5)
    w2 = torch.randn(4, 5, generator=g)
    full = low_rank({"lokr_w1": w1, "lokr_w2": w2, "alpha": torch.tensor(1.0)})
    assert full.scale == 1 and torch.allclose(full.up @ full.down, torch.kron(w1, w2), atol=1e-5)


# --- diffusers' own loader as the oracle (test-only) -------------------------------------------------


def test_the_diffusers_format_matches_diffusers_load_lora_weights_and_fuse_lora(model, shapes, factors, inputs):
    pytest.importorskip("peft")
    from diffusers.loaders import HunyuanVideoLoraLoaderMixin
    from test_dit import diffusers_forward, diffusers_model

    from hunyuanvideo_pack.hunyuan_model.dit import tencent_to_diffusers

    class Oracle(HunyuanVideoLoraLoaderMixin):  # the pipeline's LoRA methods on the transformer alone
        hf_device_map = None

        def __init__(self, transformer):
            self.transformer = transformer

        @property
        def components(self):
            return {"transformer": self.transformer}

    theirs = diffusers_model(model.config)
    theirs.load_state_dict(tencent_to_diffusers(model.state_dict()))
    tensors = lora_tiny.lora_tensors(factors, "diffusers")
    oracle = Oracle(theirs)
    oracle.load_lora_weights(dict(tensors), adapter_name="style")
    oracle.fuse_lora(components=["transformer"], lora_scale=STRENGTH)
    batch = {k: v for k, v in inputs.items() if k != "guidance"}
    batch["text_mask"] = torch.ones(1, 9, dtype=torch.int64)
    expected = diffusers_forward(theirs, batch)
    ours = apply_loras(model, [AppliedLora(parse_lora(tensors, shapes, "d"), STRENGTH)])(**inputs)
    assert rel(ours, expected) < 1e-4  # test_dit's float32 parity bound
