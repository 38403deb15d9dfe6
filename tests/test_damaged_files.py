"""A truncated or mislabelled safetensors file picked in the VAE, text-encoder or embeds loader is named as
such (as the DiT loader does), not reported by safetensors' bare "incomplete metadata" message."""

import shutil
from pathlib import Path

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.checkpoint import CorruptCheckpointError
from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds
from hunyuanvideo_pack.hunyuan_model.text_encoder import load_text_encoder
from hunyuanvideo_pack.hunyuan_model.text_encoder.embeds_io import load_embeds, save_embeds
from hunyuanvideo_pack.hunyuan_model.vae import load_vae


def _truncated(source: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    data = source.read_bytes()
    damaged = folder / source.name
    damaged.write_bytes(data[: len(data) // 2])
    return damaged


def test_a_truncated_vae_file_is_named(demo_models_dir, tmp_path):
    damaged = _truncated(demo_models_dir / "vae" / "hunyuan_video_vae_bf16.safetensors", tmp_path)
    with pytest.raises(CorruptCheckpointError, match=rf"'{damaged}' is truncated: tensor '.+' ends at byte"):
        load_vae(damaged)


@pytest.mark.parametrize("part", ["llm", "clip"])
def test_a_truncated_text_encoder_file_is_named(demo_models_dir, tmp_path, part):
    folder = shutil.copytree(demo_models_dir / "text_encoders", tmp_path / "text_encoders")  # with the tokenizers
    files = {"llm": folder / "llava_llama3_fp16.safetensors", "clip": folder / "clip_l.safetensors"}
    files[part] = _truncated(files[part], folder)
    with pytest.raises(CorruptCheckpointError, match=rf"'{files[part]}' is truncated"):
        load_text_encoder(files["llm"], files["clip"])


def test_a_web_page_saved_as_safetensors_is_named(tmp_path):
    page = tmp_path / "clip_l.safetensors"
    page.write_text("<html><body>Access denied</body></html>")
    with pytest.raises(CorruptCheckpointError, match="clip_l.safetensors. is not a model file this pack reads"):
        load_vae(page)


def test_a_truncated_embeds_file_is_named(tmp_path):
    prompt = PromptEmbeds(torch.ones(1, 4, 8), torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 6))
    saved = save_embeds(TextEmbeds(positive=prompt), tmp_path / "embeds.safetensors")
    damaged = _truncated(saved, tmp_path / "damaged")
    with pytest.raises(CorruptCheckpointError, match=rf"'{damaged}' is truncated"):
        load_embeds(damaged)
