"""The DiT: released shapes on meta, config inference, key conversion, and parity with diffusers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hunyuanvideo_pack.hunyuan_model.checkpoint import load_weights
from hunyuanvideo_pack.hunyuan_model.dit import (
    DiTConfig,
    HunyuanVideoTransformer,
    diffusers_to_tencent,
    embedded_guidance,
    init_random_weights,
    tencent_to_diffusers,
)
from hunyuanvideo_pack.hunyuan_model.dit.rope import rope_tables, rotate_video_tokens_
from hunyuanvideo_pack.hunyuan_model.dit.weights import fitting_model

GUIDANCE = 6.0
FP32_TOLERANCE = 1e-4  # of the output's max magnitude
BF16_TOLERANCE = 2e-2  # measured: 1.3% against diffusers in bf16; 0.9% (ours) and 1.0% (diffusers) against float32


def spec_shapes(guidance: bool = True) -> dict[str, tuple[int, ...]]:
    """The released checkpoint's keys and shapes, written out from the spec (section 1.6)."""
    h, m, shapes = 3072, 12288, {"img_in.proj.weight": (3072, 16, 1, 2, 2), "img_in.proj.bias": (3072,)}

    def linear(name: str, out: int, inp: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, inp), (out,)

    linear("txt_in.input_embedder", h, 4096)
    linear("txt_in.t_embedder.mlp.0", h, 256)
    linear("txt_in.t_embedder.mlp.2", h, h)
    linear("txt_in.c_embedder.linear_1", h, 4096)
    linear("txt_in.c_embedder.linear_2", h, h)
    for n in range(2):
        p = f"txt_in.individual_token_refiner.blocks.{n}."
        for norm in ("norm1", "norm2"):
            shapes[p + norm + ".weight"] = shapes[p + norm + ".bias"] = (h,)
        linear(p + "self_attn_qkv", 3 * h, h)
        linear(p + "self_attn_proj", h, h)
        linear(p + "mlp.fc1", m, h)
        linear(p + "mlp.fc2", h, m)
        linear(p + "adaLN_modulation.1", 2 * h, h)
    embedders = ["time_in"] + (["guidance_in"] if guidance else [])
    for name in embedders:
        linear(f"{name}.mlp.0", h, 256)
        linear(f"{name}.mlp.2", h, h)
    linear("vector_in.in_layer", h, 768)
    linear("vector_in.out_layer", h, h)
    linear("final_layer.linear", 64, h)
    linear("final_layer.adaLN_modulation.1", 2 * h, h)
    for n in range(20):
        for s in ("img", "txt"):
            p = f"double_blocks.{n}.{s}_"
            linear(p + "mod.linear", 6 * h, h)
            linear(p + "attn_qkv", 3 * h, h)
            shapes[p + "attn_q_norm.weight"] = shapes[p + "attn_k_norm.weight"] = (128,)
            linear(p + "attn_proj", h, h)
            linear(p + "mlp.fc1", m, h)
            linear(p + "mlp.fc2", h, m)
    for n in range(40):
        p = f"single_blocks.{n}."
        linear(p + "linear1", 3 * h + m, h)
        linear(p + "linear2", h, h + m)
        shapes[p + "q_norm.weight"] = shapes[p + "k_norm.weight"] = (128,)
        linear(p + "modulation.linear", 3 * h, h)
    return shapes


def meta_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def diffusers_model(config: DiTConfig):
    from diffusers import HunyuanVideoTransformer3DModel

    return HunyuanVideoTransformer3DModel(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        num_attention_heads=config.heads,
        attention_head_dim=config.head_dim,
        num_layers=config.double_blocks,
        num_single_layers=config.single_blocks,
        num_refiner_layers=config.refiner_blocks,
        mlp_ratio=config.mlp_hidden / config.hidden_size,
        patch_size=config.patch_size[1],
        patch_size_t=config.patch_size[0],
        guidance_embeds=config.guidance_embed,
        text_embed_dim=config.text_dim,
        pooled_projection_dim=config.pooled_dim,
        rope_theta=config.rope_theta,
        rope_axes_dim=config.rope_dim_list,
    ).eval()


@pytest.fixture(scope="module")
def tiny() -> HunyuanVideoTransformer:
    return init_random_weights(HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.float32), seed=1)


@pytest.fixture(scope="module")
def theirs(tiny):
    model = diffusers_model(tiny.config)
    model.load_state_dict(tencent_to_diffusers(tiny.state_dict()), strict=True)
    return model


@pytest.fixture(scope="module")
def inputs(tiny) -> dict[str, torch.Tensor]:
    """Two prompts padded to 12 tokens (7 and 10 real), a 3x8x8 latent: 48 video tokens."""
    g = torch.Generator().manual_seed(2)
    c = tiny.config
    mask = torch.zeros(2, 12, dtype=torch.int64)
    mask[0, :7], mask[1, :10] = 1, 1
    return dict(
        latents=torch.randn(2, 16, 3, 8, 8, generator=g),
        timestep=torch.tensor([700.0, 250.0]),
        text_states=torch.randn(2, 12, c.text_dim, generator=g),
        text_mask=mask,
        pooled_text=torch.randn(2, c.pooled_dim, generator=g),
    )


def ours_forward(model: HunyuanVideoTransformer, inputs: dict, rows=slice(None), **overrides) -> torch.Tensor:
    args = {k: v[rows] for k, v in inputs.items()} | overrides
    return model(**args, guidance=GUIDANCE).float()


def diffusers_forward(model, inputs: dict, rows=slice(None), dtype=torch.float32) -> torch.Tensor:
    x = {k: v[rows] for k, v in inputs.items()}
    guidance = torch.full((x["latents"].shape[0],), GUIDANCE).to(torch.bfloat16) * 1000.0  # the pipeline's 6016
    with torch.inference_mode():
        out = model(
            hidden_states=x["latents"].to(dtype),
            timestep=x["timestep"],
            encoder_hidden_states=x["text_states"].to(dtype),
            encoder_attention_mask=x["text_mask"],
            pooled_projections=x["pooled_text"].to(dtype),
            guidance=guidance,
            return_dict=False,
        )[0]
    return out.float()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# --- the released model, on meta ---------------------------------------------------------------------


def test_released_config_on_meta_has_the_spec_tensors_and_parameter_count():
    model = HunyuanVideoTransformer(DiTConfig.released(), device="meta")
    shapes = meta_shapes(model)
    assert len(shapes) == 856
    assert sum(p.numel() for p in model.parameters()) == 12_821_012_544
    assert shapes == spec_shapes()
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in model.parameters())


def test_config_is_inferred_from_shapes_alone():
    assert DiTConfig.from_state_dict(spec_shapes()) == DiTConfig.released()
    assert DiTConfig.from_state_dict(spec_shapes()).name == "HYVideo-T/2-cfgdistill"
    undistilled = DiTConfig.from_state_dict({k: torch.Size(v) for k, v in spec_shapes(guidance=False).items()})
    assert undistilled.name == "HYVideo-T/2" and not undistilled.guidance_embed
    for config in (
        DiTConfig.tiny(single_blocks=3, text_dim=48),
        DiTConfig.tiny(hidden_size=128, heads=2, mlp_hidden=256, rope_dim_list=(8, 28, 28)),  # heads of 64
    ):
        assert DiTConfig.from_state_dict(HunyuanVideoTransformer(config, device="meta").state_dict()) == config


def test_a_key_set_that_does_not_fit_is_refused_with_what_differs():
    shapes = spec_shapes()
    broken = dict(shapes, **{"single_blocks.39.extra.weight": (4,)})
    del broken["double_blocks.7.txt_mlp.fc2.bias"]
    broken["double_blocks.3.img_attn_qkv.weight"] = (9216, 3000)
    with pytest.raises(ValueError) as error:
        fitting_model(broken)
    message = str(error.value)
    assert "1 unexpected keys, first: ['single_blocks.39.extra.weight']" in message
    assert "1 missing keys, first: ['double_blocks.7.txt_mlp.fc2.bias']" in message
    assert "double_blocks.3.img_attn_qkv.weight is [9216, 3000], expected [9216, 3072]" in message
    with pytest.raises(ValueError, match="diffusers keys"):
        DiTConfig.from_state_dict({"x_embedder.proj.weight": (3072, 16, 1, 2, 2)})
    with pytest.raises(ValueError, match="prefix"):
        DiTConfig.from_state_dict({"model.diffusion_model.img_in.proj.weight": (3072, 16, 1, 2, 2)})


def test_float16_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="black frames"):
        HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.float16, device="meta")


# --- key conversion -----------------------------------------------------------------------------------


def test_diffusers_keys_round_trip_and_fit_diffusers(tiny, theirs):
    ours = tiny.state_dict()
    converted = tencent_to_diffusers(ours)
    assert set(converted) == set(theirs.state_dict())
    assert all(converted[k].shape == v.shape for k, v in theirs.state_dict().items())
    back = diffusers_to_tencent(converted)
    assert set(back) == set(ours) and all(torch.equal(back[k], ours[k]) for k in ours)
    # The final modulation's halves are swapped ([shift; scale] vs [scale; shift]).
    shift, scale = ours["final_layer.adaLN_modulation.1.weight"].chunk(2)
    assert torch.equal(converted["norm_out.linear.weight"], torch.cat((scale, shift)))
    # The released shapes convert on meta, without data.
    released = {k: torch.empty(v, device="meta") for k, v in spec_shapes().items()}
    assert meta_shapes_of(diffusers_to_tencent(tencent_to_diffusers(released))) == spec_shapes()
    with pytest.raises(ValueError, match="not Tencent HunyuanVideo DiT keys, e.g. foo.weight"):
        tencent_to_diffusers({"foo.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="only some"):
        diffusers_to_tencent({"transformer_blocks.0.attn.to_q.weight": torch.zeros(2, 2)})


def meta_shapes_of(state_dict: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items()}


# --- parity with diffusers ----------------------------------------------------------------------------


def test_float32_matches_diffusers_for_padded_batches_and_single_prompts(tiny, theirs, inputs):
    reference = diffusers_forward(theirs, inputs)
    batched = ours_forward(tiny, inputs)  # two prompt lengths: masked attention
    assert batched.shape == (2, 16, 3, 8, 8)
    assert relative_error(batched, reference) <= FP32_TOLERANCE
    for i in range(2):  # one prompt: its padding is dropped, diffusers masks it
        single = ours_forward(tiny, inputs, slice(i, i + 1))
        assert relative_error(single, reference[i : i + 1]) <= FP32_TOLERANCE
    # The comparison can fail: attending to the padding moves the output by far more than the tolerance.
    unmasked = ours_forward(tiny, inputs, text_mask=torch.ones_like(inputs["text_mask"]))
    assert relative_error(unmasked, reference) > 100 * FP32_TOLERANCE


def test_rope_axes_matter_at_the_parity_tolerance(tiny, inputs):
    other = HunyuanVideoTransformer(DiTConfig.tiny(rope_theta=10000.0), dtype=torch.float32)
    load_weights(other, tiny.state_dict())
    assert relative_error(ours_forward(other, inputs), ours_forward(tiny, inputs)) > 100 * FP32_TOLERANCE


def test_bfloat16_stays_within_the_measured_bound_of_diffusers_and_float32(tiny, inputs):
    weights = tiny.state_dict()
    ours16 = load_weights(HunyuanVideoTransformer(tiny.config, device="meta"), weights)
    theirs16 = diffusers_model(tiny.config)
    theirs16.load_state_dict(tencent_to_diffusers(weights))
    theirs16.to(torch.bfloat16)
    bf16_inputs = {
        k: v.to(torch.bfloat16) if v.is_floating_point() and k != "timestep" else v for k, v in inputs.items()
    }
    ours_out = ours_forward(ours16, bf16_inputs)
    assert ours_out.dtype == torch.float32 and ours16.final_layer.linear.weight.dtype == torch.bfloat16
    reference = ours_forward(tiny, inputs)
    theirs_out = diffusers_forward(theirs16, inputs, dtype=torch.bfloat16)
    assert relative_error(ours_out, theirs_out) <= BF16_TOLERANCE
    assert relative_error(ours_out, reference) <= BF16_TOLERANCE
    # No less accurate than diffusers in bf16 (float32 upcasts where Tencent's autocast has them).
    assert relative_error(ours_out, reference) <= 1.5 * relative_error(theirs_out, reference)


# --- components against independent formulas ----------------------------------------------------------


def test_rope_tables_and_rotation_follow_the_spec():
    from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoRotaryPosEmbed

    cos, sin = rope_tables((3, 4, 5), (16, 56, 56), 256.0)
    assert cos.shape == (60, 64)
    full_cos, full_sin = HunyuanVideoRotaryPosEmbed(2, 1, [16, 56, 56], 256.0)(torch.zeros(1, 16, 3, 8, 10))
    assert torch.equal(cos.repeat_interleave(2, dim=1), full_cos) and torch.equal(
        sin.repeat_interleave(2, dim=1), full_sin
    )
    x = torch.randn(2, 60 + 7, 3, 128)  # 60 video tokens, then 7 text tokens
    video = x[:, :60]
    rotated = torch.stack((-video[..., 1::2], video[..., ::2]), dim=-1).flatten(-2)  # rot(x)[2i] = -x[2i+1]
    expected = torch.cat((video * full_cos[:, None] + rotated * full_sin[:, None], x[:, 60:]), dim=1)
    assert torch.equal(rotate_video_tokens_(x.clone(), cos, sin), expected)
    x16 = x.bfloat16()
    expected16 = torch.cat(
        (
            (x16[:, :60].float() * full_cos[:, None] + rotated.bfloat16().float() * full_sin[:, None]).bfloat16(),
            x16[:, 60:],
        ),
        1,
    )
    assert torch.equal(rotate_video_tokens_(x16.clone(), cos, sin), expected16)


def test_embedded_guidance_is_rounded_like_the_reference_pipelines():
    assert embedded_guidance(6.0, 2, torch.device("cpu")).tolist() == [6016.0, 6016.0]
    assert embedded_guidance(torch.tensor([5.0, 7.0]), 2, torch.device("cpu")).tolist() == [4992.0, 7008.0]


def test_guidance_must_match_the_model(tiny, inputs):
    args = {k: v[:1] for k, v in inputs.items()}
    with pytest.raises(ValueError, match="guidance-distilled"):
        tiny(**args)
    undistilled = HunyuanVideoTransformer(DiTConfig.tiny(guidance_embed=False), dtype=torch.float32)
    with pytest.raises(ValueError, match="pass guidance=None"):
        undistilled(**args, guidance=6.0)
    assert undistilled(**args).shape == (1, 16, 3, 8, 8)


def test_bad_inputs_are_explained(tiny, inputs):
    with pytest.raises(ValueError, match="must divide by the patch size"):
        ours_forward(tiny, inputs, latents=inputs["latents"][..., :7])
    with pytest.raises(ValueError, match="text_states must be"):
        ours_forward(tiny, inputs, text_states=inputs["text_states"][..., :10])
    with pytest.raises(ValueError, match="no real text tokens"):
        ours_forward(tiny, inputs, text_mask=torch.zeros_like(inputs["text_mask"]))


# --- integration contracts: runner, swapped Linears, meta materialisation -----------------------------


def test_every_submodule_runs_through_the_runner_in_order(tiny, inputs):
    calls = []

    def runner(name, module, *args):
        calls.append(name)
        return module(*args)

    reference = ours_forward(tiny, inputs)
    with tiny.using_runner(runner):
        assert torch.equal(ours_forward(tiny, inputs), reference)
    assert tiny.runner.__name__ == "run_module"
    assert (
        calls
        == tiny.run_order()
        == [
            "time_in",
            "vector_in",
            "guidance_in",
            "txt_in",
            "img_in",
            "double_blocks.0",
            "double_blocks.1",
            "single_blocks.0",
            "single_blocks.1",
            "final_layer",
        ]
    )


class WrappedLinear(nn.Module):
    """Stands for an FP8/GGUF module: same call, no ``weight`` attribute."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.inner = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_linears_can_be_swapped_for_other_modules(inputs):
    model = init_random_weights(HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.float32), seed=3)
    reference = ours_forward(model, inputs)
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    # txt_in 15, time/vector/guidance_in 6, final_layer 2, 10 per double block, 3 per single block.
    assert len(linears) == 15 + 6 + 2 + 2 * 10 + 2 * 3
    for name, linear in linears:
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, WrappedLinear(linear))
    assert sum(isinstance(m, WrappedLinear) for m in model.modules()) == len(linears)
    assert torch.equal(ours_forward(model, inputs), reference)


def test_meta_model_is_materialised_by_assignment(tiny, inputs):
    weights = {k: v.clone() for k, v in tiny.state_dict().items()}
    weights["final_layer.linear.weight"] = weights["final_layer.linear.weight"].double()  # cast on load
    model = load_weights(HunyuanVideoTransformer(tiny.config, dtype=torch.float32, device="meta"), weights)
    assert model.img_in.proj.weight.data_ptr() == weights["img_in.proj.weight"].data_ptr()  # no copy
    assert model.final_layer.linear.weight.dtype == torch.float32
    assert torch.equal(ours_forward(model, inputs), ours_forward(tiny, inputs))
    del weights["single_blocks.1.q_norm.weight"]
    with pytest.raises(ValueError, match=r"1 missing keys, first: \['single_blocks.1.q_norm.weight'\]"):
        load_weights(HunyuanVideoTransformer(tiny.config, device="meta"), weights)


def test_forward_runs_in_inference_mode_and_caches_rope(tiny, inputs):
    out = tiny(**{k: v[:1] for k, v in inputs.items()}, guidance=GUIDANCE)
    assert out.is_inference() and not out.requires_grad
    first = tiny._rope.get((3, 4, 4), torch.device("cpu"))
    assert tiny._rope.get((3, 4, 4), torch.device("cpu"))[0] is first[0]


def test_token_chunking_gives_the_same_result(tiny, inputs, monkeypatch):
    from hunyuanvideo_pack.hunyuan_model.dit import layers, rope

    reference = ours_forward(tiny, inputs)
    monkeypatch.setattr(layers, "TOKEN_CHUNK", 5)  # 48 video tokens: 10 chunks, the last one short
    monkeypatch.setattr(rope, "TOKEN_CHUNK", 5)
    torch.testing.assert_close(ours_forward(tiny, inputs), reference, rtol=0, atol=1e-6)


def test_bf16_follows_tencents_autocast_order_and_precision(inputs):
    """Where Tencent (bf16 weights under autocast) and diffusers (pure bf16) round differently, we round as Tencent."""
    import torch.nn.functional as F

    from hunyuanvideo_pack.hunyuan_model.dit.layers import norm_modulate

    model = init_random_weights(HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.bfloat16), seed=4)
    seen = {}

    def runner(name, module, *args):
        out = module(*args)
        seen[name] = args[2] if name == "double_blocks.0" else out
        return out

    with model.using_runner(runner):
        ours_forward(model, inputs)
    t, clip, g = seen["time_in"], seen["vector_in"], seen["guidance_in"]
    assert torch.equal(seen["double_blocks.0"], (t + clip) + g)  # models.py:618-631; diffusers adds (t + g) + clip
    assert not torch.equal((t + clip) + g, (t + g) + clip)
    # Autocast runs layer_norm in float32 and modulate() on its float32 output: one rounding, at the end.
    generator = torch.Generator().manual_seed(5)
    x, shift, scale = (
        torch.randn(shape, generator=generator).bfloat16() for shape in [(2, 9, 256), (2, 256), (2, 256)]
    )
    autocast = (F.layer_norm(x.float(), (256,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]).bfloat16()
    assert torch.equal(norm_modulate(x, shift, scale), autocast)
    assert not torch.equal(autocast, F.layer_norm(x, (256,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None])
