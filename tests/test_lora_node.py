"""The LoRA node: lists models/loras, chains, reports matched/total and every unmatched key, leaves the
input model unchanged, strength 0 gives the input's output, other families named."""

from __future__ import annotations

import logging

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.checkpoint import WrongModelError
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle
from hunyuanvideo_pack.hunyuan_model.lora import linear_shapes
from hunyuanvideo_pack.hunyuan_model.tiny import dit_files as dit_tiny
from hunyuanvideo_pack.hunyuan_model.tiny import lora_files as lora_tiny
from hunyuanvideo_pack.nodes.block_swap import HunyuanVideoBlockSwap
from hunyuanvideo_pack.nodes.lora import HunyuanVideoLoRA

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dit():
    return dit_tiny.random_transformer(dit_tiny.demo_config(), seed=3)


@pytest.fixture
def loras(models_dir, dit):
    factors = lora_tiny.random_factors(linear_shapes(dit), rank=4, seed=12)
    folder = models_dir / "loras"
    lora_tiny.write_lora(lora_tiny.lora_tensors(factors, "musubi"), folder / "style.safetensors")
    extra = lora_tiny.lora_tensors(factors, "diffusers") | {"transformer.pos_embed.lora_A.weight": torch.zeros(4, 8)}
    lora_tiny.write_lora(extra, folder / "sub" / "diffusers.safetensors")
    wan = {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 8)}
    lora_tiny.write_lora(wan, folder / "wan_style.safetensors")
    return factors


@pytest.fixture
def inputs(dit):
    g = torch.Generator().manual_seed(13)
    c = dit.config
    return dict(
        latents=torch.randn(1, 16, 2, 4, 4, generator=g),
        timestep=torch.tensor([500.0]),
        text_states=torch.randn(1, 5, c.text_dim, generator=g),
        text_mask=None,
        pooled_text=torch.randn(1, c.pooled_dim, generator=g),
        guidance=6.0,
    )


def test_the_node_lists_loras_and_chains_with_a_report(loras, dit, inputs, caplog):
    names = HunyuanVideoLoRA.INPUT_TYPES()["required"]["lora_name"][0]
    assert names == ["style.safetensors", "sub/diffusers.safetensors", "wan_style.safetensors"]
    handle = TransformerHandle(dit, CPU, CPU, description="tiny")
    expected = dit(**inputs)
    node = HunyuanVideoLoRA()
    styled, report = node.apply(handle, "style.safetensors", 1.0)
    total = len(lora_tiny.lora_tensors(loras, "musubi"))
    assert f"musubi-tuner / kohya naming; {total}/{total} keys matched" in report
    assert styled.model is not dit and handle.model is dit and "LoRA style.safetensors x1" in styled.description
    with caplog.at_level(logging.INFO, logger="HunyuanVideo"):
        both, report = node.apply(styled, "sub/diffusers.safetensors", -0.5, "single_blocks=0", "on_the_fly")
    assert "transformer.pos_embed.lora_A.weight" in report and "not applied" in report
    assert "transformer.pos_embed.lora_A.weight" in caplog.text  # the log names it too
    assert "LoRA stack: style.safetensors x1; diffusers.safetensors x-0.5 (single_blocks=0)" in report
    assert torch.equal(dit(**inputs), expected)  # the input model is untouched
    assert not torch.equal(both.model(**inputs), styled.model(**inputs))
    zero, _ = node.apply(handle, "style.safetensors", 0.0)
    assert torch.equal(zero.model(**inputs), expected)
    swapped = HunyuanVideoBlockSwap().configure(both, "manual", 1, 1, False, False, False, True)[0]
    assert swapped.model is both.model
    assert HunyuanVideoLoRA.IS_CHANGED("style.safetensors") != HunyuanVideoLoRA.IS_CHANGED("wan_style.safetensors")


def test_the_node_names_wrong_inputs(loras, dit):
    handle = TransformerHandle(dit, CPU, CPU)
    with pytest.raises(WrongModelError, match="a Wan video model"):
        HunyuanVideoLoRA().apply(handle, "wan_style.safetensors", 1.0)
    with pytest.raises(ValueError, match="selector=factor"):
        HunyuanVideoLoRA().apply(handle, "style.safetensors", 1.0, "blocks 3")
    with pytest.raises(ValueError, match="loaded HunyuanVideo DiT"):
        HunyuanVideoLoRA().apply(dit, "style.safetensors", 1.0)
    with pytest.raises(FileNotFoundError, match="loras"):
        HunyuanVideoLoRA().apply(handle, "missing.safetensors", 1.0)
