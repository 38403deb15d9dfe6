"""The text nodes as a graph would run them: models folder in, embeds out, saved and loaded back."""

import shutil

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.text_encoder import VIDEO, HunyuanTextEncoder
from hunyuanvideo_pack.hunyuan_model.tiny import text_encoder_files as tiny
from hunyuanvideo_pack.nodes import comfy_env
from hunyuanvideo_pack.nodes.text import (
    HunyuanVideoConditioningToEmbeds,
    HunyuanVideoTextEmbedsLoad,
    HunyuanVideoTextEmbedsSave,
    HunyuanVideoTextEncode,
    HunyuanVideoTextEncoderLoader,
    encode_with_handle,
    text_encoder_handle,
)

PROMPT = "A cat walks on the grass, realistic style."


@pytest.fixture
def text_models_dir(models_dir, text_tokenizers, tiny_text_models, monkeypatch):
    """ComfyUI's files in models/text_encoders: CLIP with its tokenizer beside it, the LLM with none,
    so it must fall back to the tokenizer ComfyUI ships."""
    llm, clip = tiny_text_models
    folder = models_dir / "text_encoders"
    tiny.write_llm(llm, folder / "llava_llama3_fp16.safetensors", "comfy_file")
    tiny.write_clip(clip, folder / "clip_l.safetensors", "comfy_file", text_tokenizers.clip_dir)
    shipped = {"llm": text_tokenizers.llm_dir, "clip": None}
    monkeypatch.setattr(comfy_env, "comfy_tokenizer_dir", shipped.get)
    return folder


def _widgets(node, **overrides):
    """Each required widget's default, as a fresh node in the UI has them."""
    values = {}
    for name, spec in node.INPUT_TYPES()["required"].items():
        if isinstance(spec[0], list):
            values[name] = spec[1]["default"]
        elif "default" in spec[1]:
            values[name] = spec[1]["default"]
    return values | overrides


def test_loader_encode_save_load_through_the_nodes(text_models_dir, text_tokenizers, tiny_text_models):
    loader = HunyuanVideoTextEncoderLoader()
    widgets = _widgets(loader, precision="fp32", device="cpu", after_encoding="free")
    assert (widgets["llm"], widgets["clip"]) == ("llava_llama3_fp16.safetensors", "clip_l.safetensors")
    (handle,) = loader.load(**widgets)

    encode = HunyuanVideoTextEncode()
    (embeds,) = encode.encode(**_widgets(encode, text_encoder=handle, prompt=PROMPT, cfg_scale=4.0))
    assert not handle.model.loaded  # freed right after encoding

    llm, clip = tiny_text_models
    expected = HunyuanTextEncoder(llm, text_tokenizers.llm, clip, text_tokenizers.clip).encode([PROMPT, ""])
    assert torch.equal(embeds.positive.text_states, expected.text_states[:1])
    assert torch.equal(embeds.negative.text_states, expected.text_states[1:])
    assert torch.equal(embeds.positive.pooled, expected.pooled[:1]) and embeds.cfg_scale == 4.0

    (passed,) = HunyuanVideoTextEmbedsSave().save(embeds, "hunyuanvideo/embeds")
    assert passed is embeds
    names = HunyuanVideoTextEmbedsLoad.INPUT_TYPES()["required"]["embeds_file"][0]
    assert names == ["hunyuanvideo/embeds_00001_.safetensors"]
    (loaded,) = HunyuanVideoTextEmbedsLoad().load(names[0])
    assert torch.equal(loaded.positive.text_states, embeds.positive.text_states)
    assert torch.equal(loaded.negative.pooled, embeds.negative.pooled) and loaded.cfg_scale == 4.0


def test_offload_keeps_the_encoder_in_ram_for_the_next_prompt(text_models_dir):
    loader = HunyuanVideoTextEncoderLoader()
    (handle,) = loader.load(**_widgets(loader, precision="fp32", device="gpu", llm_weights="fp8_e4m3fn"))
    encode = HunyuanVideoTextEncode()
    custom = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    widgets = _widgets(encode, text_encoder=handle, prompt=PROMPT, template="custom", custom_template=custom)
    (embeds,) = encode.encode(**widgets)
    assert handle.model.loaded and handle.model.device == comfy_env.offload_device()
    assert embeds.negative is None and embeds.positive.text_states.shape == (1, 256, 64)
    assert embeds.positive.text_mask.sum() == 11


def test_missing_llm_tokenizer_names_the_folders_searched(text_models_dir, monkeypatch):
    monkeypatch.setattr(comfy_env, "comfy_tokenizer_dir", lambda kind: None)
    loader = HunyuanVideoTextEncoderLoader()
    with pytest.raises(FileNotFoundError, match="no LLM tokenizer found for llava_llama3_fp16.safetensors") as error:
        loader.load(**_widgets(loader))
    assert str(text_models_dir / "llava_llama3_fp16_tokenizer") in str(error.value)


def test_encoders_that_do_not_fit_say_what_to_change_and_stay_an_out_of_memory_error():
    class TooLarge:
        """An encoder whose GPU run fails for want of memory."""

        moves = []

        def load(self):
            pass

        def memory_bytes(self):
            return 16 * 2**30

        def to(self, device):
            self.moves.append(torch.device(device))

        def parameters(self):
            return [torch.empty(8 * 2**30, dtype=torch.float16, device="meta")]

        def buffers(self):
            return []

        def encode_prompt(self, *args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    handle = text_encoder_handle(TooLarge(), "cpu", "offload")
    with pytest.raises(torch.cuda.OutOfMemoryError, match=r"text encoders \(16\.0 GiB\) do not fit.*fp8_e4m3fn"):
        encode_with_handle(handle, PROMPT, "", cfg_scale=1.0)
    assert handle.model.moves[-1] == comfy_env.offload_device()  # offloaded all the same


def test_custom_template_without_placeholder_is_refused_before_running():
    message = HunyuanVideoTextEncode.VALIDATE_INPUTS(template="custom", custom_template="no slot here")
    assert "exactly one {} where the prompt goes; found 0" in message
    assert HunyuanVideoTextEncode.VALIDATE_INPUTS(template="video", custom_template="no slot here") is True
    assert HunyuanVideoTextEncode.VALIDATE_INPUTS(template="custom", custom_template=VIDEO.text) is True


def test_nf4_on_the_cpu_is_refused_before_running():
    message = HunyuanVideoTextEncoderLoader.VALIDATE_INPUTS(llm_weights="nf4", device="cpu")
    assert "nf4 runs on an NVIDIA GPU only" in message
    assert HunyuanVideoTextEncoderLoader.VALIDATE_INPUTS(llm_weights="fp8_e4m3fn", device="cpu") is True


def test_native_conditioning_becomes_embeds_with_true_cfg():
    def conditioning(tokens):
        return [[torch.randn(1, tokens, 4096), {"pooled_output": torch.randn(1, 768)}]]

    node = HunyuanVideoConditioningToEmbeds()
    (embeds,) = node.convert(conditioning(12), cfg_scale=5.0, negative=conditioning(3))
    assert embeds.uses_cfg and embeds.negative.text_mask.sum() == 3
    assert embeds.positive.text_states.shape == (1, 256, 4096)
    with pytest.raises(ValueError, match="cfg_scale is 5.0 but no negative conditioning is connected"):
        node.convert(conditioning(12), cfg_scale=5.0)


def test_embeds_load_refuses_names_outside_the_output_folder(models_dir, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(__file__, outside)
    with pytest.raises(PermissionError, match="contains '..'"):
        HunyuanVideoTextEmbedsLoad().load("../elsewhere.safetensors")
