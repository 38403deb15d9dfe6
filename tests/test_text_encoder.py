"""Text encoding: real tokenizers, the template crop, parity with diffusers, every checkpoint
layout, FP8 storage, saved embeds, the native-conditioning bridge and the errors users meet."""

import json
import logging
import sys
import types
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from hunyuanvideo_pack.hunyuan_model.checkpoint import CheckpointError, WrongModelError, open_checkpoint
from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds
from hunyuanvideo_pack.hunyuan_model.identify import ModelKind, identify
from hunyuanvideo_pack.hunyuan_model.quant import CastLinear, GGUFLinear, quantize_fp8_scaled
from hunyuanvideo_pack.hunyuan_model.quant.nf4 import require_nf4
from hunyuanvideo_pack.hunyuan_model.text_encoder import (
    IMAGE,
    VIDEO,
    ClipConfig,
    HunyuanTextEncoder,
    LlmConfig,
    PromptTemplate,
    crop_start,
    load_clip,
    load_llm,
    load_text_encoder,
)
from hunyuanvideo_pack.hunyuan_model.text_encoder.embeds_io import load_embeds, save_embeds
from hunyuanvideo_pack.hunyuan_model.text_encoder.gguf_names import llama_cpp_names
from hunyuanvideo_pack.hunyuan_model.text_encoder.native import embeds_from_conditioning
from hunyuanvideo_pack.hunyuan_model.text_encoder.templates import sequence_length
from hunyuanvideo_pack.hunyuan_model.text_encoder.tokenizers import load_tokenizer, tokenizer_candidates
from hunyuanvideo_pack.hunyuan_model.tiny import text_encoder_files as tiny

PROMPTS = ["A cat walks on the grass, realistic style.", "", "a red fox in the snow at dawn"]


@pytest.fixture(scope="module")
def encoder(text_tokenizers, tiny_text_models):
    llm, clip = tiny_text_models
    return HunyuanTextEncoder(llm, text_tokenizers.llm, clip, text_tokenizers.clip)


@pytest.fixture(scope="module")
def reference(encoder):
    return encoder.encode(PROMPTS)


@pytest.fixture(scope="module")
def written(tmp_path_factory, text_tokenizers, tiny_text_models):
    """The tiny models in every layout, in one models folder; tokenizers inside folders and in
    ``<name>_tokenizer/`` beside single files."""
    llm, clip = tiny_text_models
    root = tmp_path_factory.mktemp("text_encoders")
    paths = {}
    for layout in tiny.LLM_LAYOUTS:
        name = layout + {
            "gguf_file": ".gguf",
            "comfy_file": ".safetensors",
            "comfy_fp8_scaled_file": ".safetensors",
        }.get(layout, "")
        paths[layout] = tiny.write_llm(llm, root / name, layout, text_tokenizers.llm_dir)
    for layout in tiny.CLIP_LAYOUTS:
        name = "clip_l" + (".safetensors" if layout.endswith("file") else "")
        paths["clip_" + layout] = tiny.write_clip(clip, root / name, layout, text_tokenizers.clip_dir)
    return paths


# ---------------------------------------------------------------------------------------------
# Tokenizers and templates


def test_real_tokenizers_give_the_reference_ids(text_tokenizers):
    llm, clip = text_tokenizers.llm, text_tokenizers.clip
    ids = llm(VIDEO.format("A cat walks on the grass")).input_ids
    assert ids[:5] == [128000, 128006, 9125, 128007, 271]  # BOS, <|start_header_id|>, system, ..., \n\n
    assert ids[91:] == [128006, 882, 128007, 271, 32, 8415, 23291, 389, 279, 16763, 128009]
    assert llm.convert_tokens_to_ids(["<image>", "<pad>"]) == [128257, 128258]
    assert llm.pad_token_id == 128258
    assert clip("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_llama3_tokenizer_loads_right_although_its_config_names_llamatokenizer(text_tokenizers):
    # transformers 5's LlamaTokenizer(Fast) turns the video prefix into 96 wrong ids (known_traps.md).
    assert '"LlamaTokenizer"' in (text_tokenizers.llm_dir / "tokenizer_config.json").read_text()
    reloaded = load_tokenizer(text_tokenizers.llm_dir, "llm")
    assert reloaded(VIDEO.prefix).input_ids == text_tokenizers.llm(VIDEO.prefix).input_ids
    assert len(reloaded(VIDEO.prefix).input_ids) == 95


def test_crop_finds_the_user_turn_at_the_reference_lengths(text_tokenizers):
    tokenizer = text_tokenizers.llm
    assert crop_start(tokenizer, VIDEO) == 95
    assert crop_start(tokenizer, IMAGE) == 36
    assert sequence_length(tokenizer, VIDEO) == 351
    assert sequence_length(tokenizer, IMAGE) == 351  # Tencent's max_length comes from the video template
    chat = PromptTemplate("custom", "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>")
    assert crop_start(tokenizer, chat) == 5  # BOS + header (3) + \n\n
    assert sequence_length(tokenizer, chat) == 256 + 5
    bare = PromptTemplate("custom", "Describe this:{}")
    assert crop_start(tokenizer, bare) == len(tokenizer("Describe this:").input_ids) == 4


@pytest.mark.parametrize("text", ["no placeholder", "{} twice {}"])
def test_template_needs_exactly_one_placeholder(text):
    with pytest.raises(ValueError, match=r"exactly one \{\} where the prompt goes"):
        PromptTemplate("custom", text)


# ---------------------------------------------------------------------------------------------
# Encoding: parity with diffusers' HunyuanVideoPipeline.encode_prompt


def _diffusers_pipeline(text_tokenizers, tiny_text_models):
    from diffusers import HunyuanVideoPipeline

    llm, clip = tiny_text_models
    return HunyuanVideoPipeline(
        text_encoder=llm,
        tokenizer=text_tokenizers.llm,
        transformer=None,
        vae=None,
        scheduler=None,
        text_encoder_2=clip,
        tokenizer_2=text_tokenizers.clip,
    )


def test_video_template_matches_diffusers_encode_prompt(text_tokenizers, tiny_text_models, reference):
    pipe = _diffusers_pipeline(text_tokenizers, tiny_text_models)
    states, pooled, mask = pipe.encode_prompt(PROMPTS, device=torch.device("cpu"), dtype=torch.float32)
    assert reference.text_states.shape == (3, 256, 64) and reference.pooled.shape == (3, 128)
    assert (reference.text_states - states).abs().max() <= 1e-5
    assert (reference.pooled - pooled).abs().max() <= 1e-5
    assert torch.equal(reference.text_mask, mask) and reference.text_mask.dtype == torch.int64
    # prompt tokens + <|eot_id|>; the empty prompt keeps only <|eot_id|>
    assert reference.text_mask.sum(1).tolist() == [11, 1, 9]
    assert reference.text_states.abs().mean() > 0.1  # not a degenerate all-zero comparison


def test_image_template_keeps_315_states_and_matches_diffusers(text_tokenizers, tiny_text_models, encoder):
    ours = encoder.encode(PROMPTS[:1], template=IMAGE)
    pipe = _diffusers_pipeline(text_tokenizers, tiny_text_models)
    template = {"template": IMAGE.text, "crop_start": 36}
    states, _, mask = pipe.encode_prompt(
        PROMPTS[:1], prompt_template=template, max_sequence_length=315, device=torch.device("cpu")
    )
    assert ours.text_states.shape == (1, 315, 64)
    assert (ours.text_states - states).abs().max() <= 1e-5
    assert torch.equal(ours.text_mask, mask)


def test_skip_layer_and_final_norm_pick_the_asked_state(text_tokenizers, tiny_text_models, encoder, reference):
    llm, _ = tiny_text_models
    ours = encoder.encode(PROMPTS[0], hidden_state_skip_layer=1, apply_final_norm=True)
    tokens = text_tokenizers.llm(VIDEO.format(PROMPTS[0]), max_length=351, padding="max_length", return_tensors="pt")
    outputs = []
    hook = llm.layers[-3].register_forward_hook(lambda module, args, out: outputs.append(out))
    with torch.no_grad():
        hidden = llm(**tokens, output_hidden_states=True).hidden_states
    hook.remove()
    layer_n_minus_2 = (outputs[0][0] if isinstance(outputs[0], tuple) else outputs[0])[:, 95:]  # no final norm
    assert (reference.text_states[:1] - layer_n_minus_2).abs().max() <= 1e-5
    assert (ours.text_states - llm.norm(hidden[-2])[:, 95:]).abs().max() <= 1e-5
    assert (ours.text_states - reference.text_states[:1]).abs().max() > 0.1
    with pytest.raises(ValueError, match="between 0 and 3 for this 4-layer LLM, got 4"):
        encoder.encode("x", hidden_state_skip_layer=4)


def test_long_prompts_are_cut_at_256_tokens_with_a_warning(encoder, caplog):
    prompt = " ".join(["walking"] * 300)  # 300 tokens + <|eot_id|>
    with caplog.at_level(logging.WARNING, logger="HunyuanVideo"):
        embeds = encoder.encode(prompt)
    assert embeds.text_mask.sum().item() == 256
    assert "prompt 1 is 301 LLM tokens" in caplog.text and "the last 45 were cut" in caplog.text
    assert "prompt 1 is 302 CLIP tokens; CLIP reads 77, so the last 225 were cut" in caplog.text


def test_prompts_are_stripped_as_in_tencents_pipeline(encoder, reference):
    embeds = encoder.encode("  " + PROMPTS[0] + "\n")
    assert torch.equal(embeds.text_states, reference.text_states[:1])


@pytest.mark.parametrize("eos_token_id", [2, 49407])  # openai's config says 2 (legacy argmax); newer ones 49407
def test_clip_pools_at_the_first_end_of_text_token(text_tokenizers, tiny_text_models, eos_token_id):
    llm, clip = tiny_text_models
    config = replace(ClipConfig.tiny(), eos_token_id=eos_token_id).to_transformers()
    pooling = type(clip)(config).eval()
    pooling.load_state_dict(clip.state_dict())
    prompts = ["a photo of a cat", "", " ".join(["walking"] * 100)]  # short, empty, cut at 77 tokens
    tokens = text_tokenizers.clip(prompts, max_length=77, padding="max_length", truncation=True, return_tensors="pt")
    assert tokens.input_ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    with torch.no_grad():
        final_norm_states = pooling(input_ids=tokens.input_ids).last_hidden_state  # final_layer_norm applied
    eos = torch.tensor([6, 1, 76])  # the closing <|endoftext|> (padding repeats it)
    expected = final_norm_states[torch.arange(3), eos]
    pooled = HunyuanTextEncoder(llm, text_tokenizers.llm, pooling, text_tokenizers.clip).encode(prompts).pooled
    assert torch.equal(pooled, expected)
    assert (pooled[0] - final_norm_states[0, 7]).abs().max() > 0.1  # a padding position gives another vector


def test_encode_prompt_encodes_the_negative_only_for_true_cfg(encoder, reference):
    plain = encoder.encode_prompt(PROMPTS[0], "blurry")
    assert plain.negative is None and not plain.uses_cfg
    guided = encoder.encode_prompt(PROMPTS[0], None, cfg_scale=5.0)
    assert guided.uses_cfg and torch.equal(guided.negative.text_states, reference.text_states[1:2])


# ---------------------------------------------------------------------------------------------
# Loading: every layout gives the same encoder


@pytest.mark.parametrize("layout", ["text_folder", "llava_folder", "comfy_file"])
def test_every_llm_layout_loads_the_same_weights(written, layout, tiny_text_models):
    llm = load_llm(written[layout], dtype=torch.float32)
    expected = tiny_text_models[0].state_dict()
    assert set(llm.state_dict()) == set(expected)
    assert all(torch.equal(llm.state_dict()[k], v) for k, v in expected.items())


def test_a_llama_cpp_gguf_loads_with_its_blocks_kept(written, encoder, text_tokenizers, tiny_text_models):
    """city96's llama.cpp GGUF: names mapped back, query/key rows un-permuted, Q8_0 blocks kept."""
    llm = load_llm(written["gguf_file"], dtype=torch.float32)
    assert isinstance(llm.layers[0].self_attn.q_proj, GGUFLinear)
    expected = tiny_text_models[0]
    assert torch.equal(llm.norm.weight, expected.norm.weight)  # 1-D: F32 in the file
    embedding = expected.embed_tokens.weight  # Q8_0 in the file, dequantized at load (not a Linear)
    assert (llm.embed_tokens.weight - embedding).abs().max() < 0.01 * embedding.abs().max()
    q = llm.layers[0].self_attn.q_proj
    x = torch.randn(3, q.in_features)
    q8 = (q(x) - expected.layers[0].self_attn.q_proj(x)).abs().max() / expected.layers[0].self_attn.q_proj(
        x
    ).abs().max()
    assert q8 < 0.02  # Q8_0 rounding, rows in transformers' order
    clip = tiny_text_models[1]
    states = HunyuanTextEncoder(llm, text_tokenizers.llm, clip, text_tokenizers.clip).encode(PROMPTS).text_states
    full = encoder.encode(PROMPTS).text_states
    assert (states - full).norm() / full.norm() < 0.05
    with pytest.raises(CheckpointError, match=r"is quantized \(Q8_0\); weight storage fp8_e4m3fn_scaled would"):
        load_llm(written["gguf_file"], weights="fp8_e4m3fn")


def test_llava_saved_by_transformers_5_and_its_config_hints_load(tmp_path, written, tiny_text_models):
    from safetensors.torch import load_file

    tensors = load_file(written["comfy_file"])
    save_file({"model.language_model." + k.removeprefix("model."): v for k, v in tensors.items()}, tmp_path / "m.sft")
    text_config = {"model_type": "llama", "rope_parameters": {"rope_theta": 10000.0}, "rms_norm_eps": 1e-6}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": text_config}))
    (tmp_path / "m.sft").rename(tmp_path / "model.safetensors")
    llm = load_llm(tmp_path, dtype=torch.float32)
    assert all(torch.equal(llm.state_dict()[k], v) for k, v in tiny_text_models[0].state_dict().items())
    assert llm.config.rms_norm_eps == 1e-6
    assert llm.rotary_emb.inv_freq[1].item() == pytest.approx(10000.0 ** (-2 / 128))  # the RoPE base in use


@pytest.mark.parametrize("layout", tiny.CLIP_LAYOUTS)
def test_every_clip_layout_loads_the_same_weights(written, layout, tiny_text_models):
    clip = load_clip(written["clip_" + layout], dtype=torch.float32)
    expected = tiny_text_models[1].state_dict()
    assert all(torch.equal(clip.state_dict()[k], v) for k, v in expected.items())


def test_folders_with_their_tokenizers_encode_like_the_reference(written, reference):
    encoder = load_text_encoder(written["llava_folder"], written["clip_clip_folder"], dtype=torch.float32)
    embeds = encoder.encode(PROMPTS)
    assert torch.equal(embeds.text_states, reference.text_states)
    assert torch.equal(embeds.pooled, reference.pooled)


def test_fp8_scaled_file_encodes_like_its_dequantized_weights(written, encoder, text_tokenizers, tiny_text_models):
    stored = load_llm(written["comfy_fp8_scaled_file"], dtype=torch.float32, weights="fp8_e4m3fn")
    upcast = load_llm(written["comfy_fp8_scaled_file"], dtype=torch.float32)
    assert isinstance(stored.layers[0].mlp.up_proj, CastLinear)
    assert stored.layers[0].mlp.up_proj.weight.dtype == torch.float8_e4m3fn
    clip = tiny_text_models[1]
    a = HunyuanTextEncoder(stored, text_tokenizers.llm, clip, text_tokenizers.clip).encode(PROMPTS)
    b = HunyuanTextEncoder(upcast, text_tokenizers.llm, clip, text_tokenizers.clip).encode(PROMPTS)
    assert (a.text_states - b.text_states).abs().max() <= 1e-5
    full = encoder.encode(PROMPTS).text_states
    relative = (a.text_states - full).norm() / full.norm()
    assert 1e-4 < relative < 0.1  # FP8 rounding, not a different model


def test_newer_comfyui_quantized_files_read_like_scaled_fp8(tmp_path, written):
    """ComfyUI 0.19's names (comfy/utils.py:1388): ``weight_scale``, ``input_scale``, a ``comfy_quant`` JSON tensor."""
    from safetensors.torch import load_file

    tensors = {}
    for key, value in load_file(written["comfy_fp8_scaled_file"]).items():
        if key == "scaled_fp8":
            continue
        if key.endswith(".scale_weight"):
            layer = key.removesuffix(".scale_weight")
            tensors[f"{layer}.weight_scale"] = value
            tensors[f"{layer}.input_scale"] = torch.ones(())
            tensors[f"{layer}.comfy_quant"] = torch.tensor(list(b'{"format": "float8_e4m3fn"}'), dtype=torch.uint8)
        else:
            tensors[key] = value
    save_file(tensors, tmp_path / "llava_llama3_fp8_new.safetensors")
    for weights in ("default", "fp8_e4m3fn"):
        new = load_llm(tmp_path / "llava_llama3_fp8_new.safetensors", dtype=torch.float32, weights=weights)
        old = load_llm(written["comfy_fp8_scaled_file"], dtype=torch.float32, weights=weights)
        assert new.state_dict().keys() == old.state_dict().keys()
        assert all(torch.equal(new.state_dict()[k].float(), v.float()) for k, v in old.state_dict().items())


def test_fp8_storage_halves_the_linear_weights(written):
    fp16 = load_llm(written["comfy_file"], dtype=torch.float16)
    fp8 = load_llm(written["comfy_file"], dtype=torch.float16, weights="fp8_e4m3fn")

    def linear_bytes(model):
        tensors = [*model.named_parameters(), *model.named_buffers()]
        return sum(p.numel() * p.element_size() for n, p in tensors if "layers." in n and "proj" in n)

    assert linear_bytes(fp8) == linear_bytes(fp16) // 2 + 4 * 7 * 4  # + one float32 scale per Linear


def test_fp8_linear_is_dequantized_matmul():
    torch.manual_seed(0)
    weight, x = torch.randn(16, 8), torch.randn(3, 8)
    layer = CastLinear.from_weight(*quantize_fp8_scaled(weight))
    expected = x @ (layer.weight.float() * layer.scale).T
    assert torch.equal(layer(x), expected)
    assert (layer(x) - x @ weight.T).abs().max() < 0.1 * (x @ weight.T).abs().max()


def test_released_sizes_build_on_meta():
    from transformers import CLIPTextModel, LlamaModel

    with torch.device("meta"):
        llm = LlamaModel(LlmConfig.released().to_transformers())
        clip = CLIPTextModel(ClipConfig.released().to_transformers())
    assert sum(p.numel() for p in llm.parameters()) == 7_505_186_816  # Llama-3-8B minus its LM head
    assert sum(p.numel() for p in clip.parameters()) == 123_060_480  # CLIP-L's text tower
    shapes = {name: tuple(p.shape) for name, p in llm.state_dict().items()}
    assert LlmConfig.from_shapes(shapes) == LlmConfig.released()


def test_release_drops_the_weights_and_the_next_encode_reads_them_again(written, reference):
    encoder = load_text_encoder(written["comfy_file"], written["clip_comfy_file"], dtype=torch.float32)
    encoder.release()
    assert not encoder.loaded and encoder.memory_bytes() == 0
    assert torch.equal(encoder.encode(PROMPTS).text_states, reference.text_states)


# ---------------------------------------------------------------------------------------------
# Errors users meet


def test_missing_tokenizer_error_lists_where_it_looked(tmp_path, written):
    lone = tmp_path / "llava_llama3_fp16.safetensors"
    lone.write_bytes(written["comfy_file"].read_bytes())
    with pytest.raises(FileNotFoundError) as error:
        load_text_encoder(lone, written["clip_comfy_file"])
    for folder in tokenizer_candidates(lone, "llm"):
        assert str(folder) in str(error.value)
    assert "llava_llama3_fp16_tokenizer" in str(error.value)


def test_single_files_find_comfyuis_shipped_tokenizers_last(tmp_path, written, text_tokenizers):
    lone = tmp_path / "llava_llama3_fp16.safetensors"
    lone.write_bytes(written["comfy_file"].read_bytes())
    candidates = tokenizer_candidates(lone, "llm", [text_tokenizers.llm_dir])
    assert candidates[-1] == text_tokenizers.llm_dir and candidates[0] == tmp_path / "llava_llama3_fp16_tokenizer"


def _fake_file(path, keys):
    save_file({key: torch.zeros(2, 2) for key in keys}, str(path))
    return path


@pytest.mark.parametrize(
    "keys, found",
    [
        (
            ["double_blocks.0.img_attn_qkv.weight", "txt_in.input_embedder.weight"],
            r"a HunyuanVideo text-to-video transformer \(DiT\); load it with HunyuanVideo Model Loader "
            r"\(HunyuanVideoModelLoader\) from models/diffusion_models",
        ),
        (
            ["decoder.conv_in.conv.weight", "encoder.conv_in.conv.weight"],
            r"a HunyuanVideo VAE; load it with HunyuanVideo VAE Loader \(HunyuanVideoVAELoader\) from models/vae",
        ),
    ],
)
def test_a_dit_or_vae_chosen_as_text_encoder_is_named(tmp_path, keys, found):
    path = _fake_file(tmp_path / "model.safetensors", keys)
    with pytest.raises(WrongModelError, match=f"model.safetensors' is not an LLM text encoder: it is {found}"):
        load_llm(path)
    with pytest.raises(WrongModelError, match=f"model.safetensors' is not a CLIP text encoder: it is {found}"):
        load_clip(path)


def test_llm_and_clip_swapped_are_named(written):
    with pytest.raises(
        WrongModelError,
        match=r"clip_l.safetensors' is not an LLM text encoder: it is a CLIP text encoder .*; choose it as clip\.",
    ):
        load_llm(written["clip_comfy_file"])
    with pytest.raises(
        WrongModelError, match=r"is not a CLIP text encoder: it is a Llama language model .*; choose it as llm\."
    ):
        load_clip(written["comfy_file"])


def test_every_layout_is_identified_as_its_encoder(written):
    for name, path in written.items():
        reader = llama_cpp_names(open_checkpoint(path, prefixes=(), architecture=None))
        kind = identify({key: info.shape for key, info in reader.infos().items()})
        assert kind is (ModelKind.CLIP_TEXT if name.startswith("clip_") else ModelKind.LLM), name


def test_a_clip_layout_the_loader_does_not_read_is_named(tmp_path):
    path = _fake_file(tmp_path / "open_clip.safetensors", ["token_embedding.weight", "transformer.resblocks.0.x"])
    with pytest.raises(
        ValueError,
        match=r"not a CLIP text encoder: it is a CLIP text encoder .*, but not in a layout this loader reads "
        r"\(2 tensors: token_embedding.weight, transformer.resblocks.0.x, ...\)",
    ):
        load_clip(path)


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(text_tokenizers, tiny_text_models):
    llm, clip = tiny_text_models
    with pytest.raises(ValueError, match="the LLM tokenizer from .* is not Llama-3's: it lacks <|begin_of_text|>"):
        HunyuanTextEncoder(llm, text_tokenizers.clip, clip, text_tokenizers.clip)
    with pytest.raises(ValueError, match="has 128259 tokens but the model's embedding has only 49408 rows"):
        HunyuanTextEncoder(llm, text_tokenizers.llm, clip, text_tokenizers.llm)


def test_nf4_without_a_gpu_says_what_to_choose_instead(written):
    with pytest.raises(RuntimeError, match="needs bitsandbytes on an NVIDIA GPU.*Choose fp8_e4m3fn"):
        load_llm(written["comfy_file"], weights="nf4", device="cpu")


def test_nf4_needs_a_bitsandbytes_that_keeps_weights_quantized_when_they_move(monkeypatch):
    # Before 0.43 a 4-bit weight moved back to the GPU (the second prompt, after offloading) is quantized again.
    bitsandbytes = types.ModuleType("bitsandbytes")
    monkeypatch.setitem(sys.modules, "bitsandbytes", bitsandbytes)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    bitsandbytes.__version__ = "0.42.0"
    with pytest.raises(RuntimeError, match=r"needs bitsandbytes 0\.43 or newer, this is 0\.42\.0.*pip install -U"):
        require_nf4(torch.device("cuda", 0))
    for version in ("0.43.0", "0.45.1.dev0", "1.0"):
        bitsandbytes.__version__ = version
        assert require_nf4(torch.device("cuda")) is bitsandbytes


# ---------------------------------------------------------------------------------------------
# Saved embeds and native conditioning


def test_saved_embeds_load_bit_identical_and_the_file_is_byte_stable(tmp_path, reference):
    embeds = TextEmbeds(positive=reference, negative=PromptEmbeds(*[t[1:2] for t in _parts(reference)]), cfg_scale=6)
    first = save_embeds(embeds, tmp_path / "a.safetensors")
    second = save_embeds(embeds, tmp_path / "b.safetensors")
    assert first.read_bytes() == second.read_bytes()
    loaded = load_embeds(first)
    for saved, back in ((embeds.positive, loaded.positive), (embeds.negative, loaded.negative)):
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(_parts(saved), _parts(back)))
    assert loaded.cfg_scale == 6.0
    fp16 = TextEmbeds(positive=reference.to(dtype=torch.float16))
    assert load_embeds(save_embeds(fp16, tmp_path / "c.safetensors")).positive.text_states.dtype == torch.float16


def _parts(prompt):
    return prompt.text_states, prompt.text_mask, prompt.pooled


def test_other_safetensors_are_not_taken_for_embeds(tmp_path):
    path = _fake_file(tmp_path / "model.safetensors", ["w"])
    with pytest.raises(ValueError, match="model.safetensors is not a HunyuanVideo text-embeds file"):
        load_embeds(path)


def test_native_conditioning_is_padded_to_256_masked_tokens():
    states, pooled = torch.randn(1, 7, 4096), torch.randn(1, 768)
    embeds = embeds_from_conditioning([[states, {"pooled_output": pooled, "guidance": 6.0}]])
    assert embeds.text_states.shape == (1, 256, 4096) and embeds.text_mask.dtype == torch.int64
    assert embeds.text_mask.sum() == 7 and torch.equal(embeds.text_states[:, :7], states)
    assert embeds.text_states[:, 7:].abs().sum() == 0 and torch.equal(embeds.pooled, pooled)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0]])
    masked = embeds_from_conditioning([[states, {"pooled_output": pooled, "attention_mask": mask}]])
    assert masked.text_mask.sum() == 3
    long = embeds_from_conditioning([[torch.randn(1, 300, 4096), {"pooled_output": pooled}]])
    assert long.text_states.shape == (1, 300, 4096)  # native keeps every token; so do we


@pytest.mark.parametrize(
    "conditioning, message",
    [
        ([], "is empty"),
        ([[torch.zeros(1, 7, 4096), {}], [torch.zeros(1, 7, 4096), {}]], "holds 2 combined prompts"),
        ([[torch.zeros(1, 7, 4096), {}]], "has no pooled CLIP-L output"),
        ([[torch.zeros(1, 77, 768), {"pooled_output": torch.zeros(1, 768)}]], "states are 768 wide"),
    ],
)
def test_native_conditioning_from_elsewhere_is_refused(conditioning, message):
    with pytest.raises(ValueError, match=message):
        embeds_from_conditioning(conditioning)
