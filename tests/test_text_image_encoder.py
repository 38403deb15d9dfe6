"""HunyuanVideo-I2V's prompt encoding with an image: the LLaVA vision tower and the image tokens in the
template, against diffusers' HunyuanVideoImageToVideoPipeline on transformers' LlavaForConditionalGeneration
(tiny random weights, the real Llama-3 tokenizer); loading the vision weights from their files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hunyuanvideo_pack.hunyuan_model.checkpoint import CheckpointError
from hunyuanvideo_pack.hunyuan_model.text_encoder import HunyuanTextEncoder, crop_start
from hunyuanvideo_pack.hunyuan_model.text_encoder.templates import VIDEO_I2V
from hunyuanvideo_pack.hunyuan_model.text_encoder.vision import LlavaVision, VisionConfig, clip_pixels, load_vision

PROMPTS = ["A cat walks on the grass, realistic style.", "a red fox in the snow at dawn"]
TOLERANCE = 1e-4  # float32, relative to the largest state


def randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if p.ndim >= 2:
                p.copy_(noise if "embedding" in name else noise / p[0].numel() ** 0.5)
            else:
                p.copy_((1.0 if name.endswith("weight") and "norm" in name else 0.0) + 0.1 * noise)
    return module.eval()


@pytest.fixture(scope="module")
def vision(tiny_text_models) -> LlavaVision:
    llm, _ = tiny_text_models
    return randomized(LlavaVision(VisionConfig.tiny(llm.config.hidden_size)), seed=11)


@pytest.fixture(scope="module")
def encoder(text_tokenizers, tiny_text_models):
    llm, clip = tiny_text_models
    return HunyuanTextEncoder(llm, text_tokenizers.llm, clip, text_tokenizers.clip)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    g = np.random.default_rng(3)
    return (g.random((336, 336, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pipe(text_tokenizers, tiny_text_models, vision):
    """diffusers' I2V pipeline around transformers' LLaVA holding our LLM and vision weights."""
    from diffusers import HunyuanVideoImageToVideoPipeline
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration

    llm, _ = tiny_text_models
    config = LlavaConfig(
        text_config=llm.config,
        vision_config=vision.config.to_transformers(),
        image_token_index=128257,
        pad_token_id=128258,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    llava = LlavaForConditionalGeneration(config).eval()
    llava.model.language_model.load_state_dict(llm.state_dict())
    llava.model.vision_tower.load_state_dict(vision.tower.state_dict())
    llava.model.multi_modal_projector.load_state_dict(vision.multi_modal_projector.state_dict())
    processor = CLIPImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, image_mean=None, image_std=None
    )
    processor.image_mean, processor.image_std = list(CLIP_MEAN), list(CLIP_STD)
    return HunyuanVideoImageToVideoPipeline(llava, text_tokenizers.llm, None, None, None, None, None, processor)


from hunyuanvideo_pack.hunyuan_model.text_encoder.vision import CLIP_MEAN, CLIP_STD  # noqa: E402


def test_crop_and_image_token_position_with_the_real_tokenizer(text_tokenizers):
    tokenizer = text_tokenizers.llm
    assert crop_start(tokenizer, VIDEO_I2V) == 103  # Tencent's crop_start for dit-llm-encode-video-i2v
    ids = tokenizer(VIDEO_I2V.format("a cat")).input_ids
    assert ids[:7] == [128000, 128006, 9125, 128007, 271, 128257, 198]  # BOS, system header, \n\n, <image>, \n
    assert ids.index(128257) == 5  # Tencent's image_emb_start


@pytest.mark.parametrize("interleave", [2, 4])
def test_text_and_image_encoding_matches_diffusers_llava(pipe, vision, encoder, picture, interleave):
    from PIL import Image

    theirs, their_mask = pipe._get_llama_prompt_embeds(
        [Image.fromarray(picture)] * len(PROMPTS),
        PROMPTS,
        pipe_template(),
        device=torch.device("cpu"),
        dtype=torch.float32,
        image_embed_interleave=interleave,
    )
    pixels = clip_pixels(torch.from_numpy(picture).float().div(255).unsqueeze(0))
    ours = encoder.encode_with_image(PROMPTS, vision(pixels), interleave=interleave)
    # 576 image states every interleave-th, then 256 - 4 prompt states.
    assert ours.text_states.shape == (2, 576 // interleave + 252, 64)
    assert torch.equal(ours.text_mask, their_mask.long())
    assert ours.text_mask[:, : 576 // interleave].all()
    scale = theirs.abs().max()
    assert ((ours.text_states - theirs).abs().max() / scale).item() < TOLERANCE
    # The image matters: a black image moves the prompt states by far more than the tolerance.
    black = encoder.encode_with_image(PROMPTS, vision(clip_pixels(torch.zeros(1, 336, 336, 3))), interleave=interleave)
    n = 576 // interleave
    assert ((black.text_states[:, n:] - theirs[:, n:]).abs().max() / scale).item() > 100 * TOLERANCE


def pipe_template() -> dict:
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video_image2video import DEFAULT_PROMPT_TEMPLATE

    assert DEFAULT_PROMPT_TEMPLATE["template"] == VIDEO_I2V.text  # the same words as Tencent's
    return DEFAULT_PROMPT_TEMPLATE


def test_clip_pixels_are_the_image_processors(picture):
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor.image_mean, processor.image_std = list(CLIP_MEAN), list(CLIP_STD)
    theirs = processor(picture, return_tensors="pt").pixel_values
    ours = clip_pixels(torch.from_numpy(picture).float().div(255).unsqueeze(0))
    assert (ours - theirs).abs().max().item() < 1e-5
    wide = clip_pixels(torch.rand(1, 200, 500, 4))  # alpha dropped, short side to 336, centre crop
    assert wide.shape == (1, 3, 336, 336)


def test_vision_weights_load_from_comfyui_file_and_llava_folder(tmp_path, vision, picture):
    # As released: the tower under vision_model.* (transformers 5 drops that prefix in memory).
    state = {k.replace("tower.", "vision_model.", 1): v.half() for k, v in vision.state_dict().items()}
    comfy = tmp_path / "llava_llama3_vision.safetensors"
    save_file(state, str(comfy))
    folder = tmp_path / "llava-llama-3-8b-v1_1-transformers"
    folder.mkdir()
    llava = {("vision_tower." + k if k.startswith("vision_model.") else k): v for k, v in state.items()}
    llava["language_model.model.norm.weight"] = torch.ones(4, dtype=torch.float16)
    save_file(llava, str(folder / "model-00001-of-00001.safetensors"))
    pixels = clip_pixels(torch.from_numpy(picture).float().div(255).unsqueeze(0))
    expected = vision(pixels)
    for path in (comfy, folder):
        loaded = load_vision(path, torch.float32)
        assert loaded.config == vision.config
        assert ((loaded(pixels) - expected).abs().max() / expected.abs().max()).item() < 2e-3  # fp16 storage
    no_projector = {k: v for k, v in state.items() if not k.startswith("multi_modal_projector.")}
    save_file(no_projector, str(tmp_path / "clip_vision_vit_l.safetensors"))
    with pytest.raises(CheckpointError, match="without LLaVA's projector.*llava_llama3_vision.safetensors"):
        load_vision(tmp_path / "clip_vision_vit_l.safetensors")
    save_file({"foo.weight": torch.ones(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="no vision tower.*models/clip_vision"):
        load_vision(tmp_path / "other.safetensors")


def test_the_node_reads_the_vision_file_from_clip_vision_and_encodes_both_prompts(models_dir, vision, encoder, picture):
    from hunyuanvideo_pack.nodes.text import text_encoder_handle
    from hunyuanvideo_pack.nodes.text_image import HunyuanVideoTextImageEncode

    node = HunyuanVideoTextImageEncode()
    handle = text_encoder_handle(encoder, device="cpu", after_encoding="offload")
    image = torch.from_numpy(picture).float().div(255).unsqueeze(0)
    args = dict(image=image, prompt=PROMPTS[0], negative_prompt="blurry", image_interleave=4, cfg_scale=3.0)
    with pytest.raises(ValueError, match="models/clip_vision is empty.*llava_llama3_vision.safetensors"):
        node.encode(handle, "", **args)
    state = {k.replace("tower.", "vision_model.", 1): v for k, v in vision.state_dict().items()}
    save_file(state, str(models_dir / "clip_vision" / "llava_llama3_vision.safetensors"))
    required = HunyuanVideoTextImageEncode.INPUT_TYPES()["required"]
    assert required["vision_model"][1]["default"] == "llava_llama3_vision.safetensors"
    (embeds,) = node.encode(handle, "llava_llama3_vision.safetensors", **args)
    pixels = clip_pixels(image)
    positive = encoder.encode_with_image(PROMPTS[0], vision(pixels), interleave=4)
    negative = encoder.encode_with_image("blurry", vision(clip_pixels(torch.zeros_like(image))), interleave=4)
    assert torch.allclose(embeds.positive.text_states, positive.text_states, atol=1e-5)
    assert torch.allclose(embeds.negative.text_states, negative.text_states, atol=1e-5)
    assert embeds.cfg_scale == 3.0 and embeds.positive.text_states.shape[1] == 144 + 252
