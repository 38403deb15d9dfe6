"""The VAE nodes beside ComfyUI's own: the loader starts on HunyuanVideo's VAE among every model's, and
the encoder takes an IMAGE with an alpha channel as core VAE Encode does."""

import torch
from safetensors.torch import save_file

from hunyuanvideo_pack.hunyuan_model.vae import CausalVideoVAE, VAEConfig
from hunyuanvideo_pack.nodes.vae import HunyuanVideoVAEEncode, HunyuanVideoVAELoader

AUTO_TILING = ("auto", 256, 64, 64, 16)


def test_the_loader_starts_on_the_hunyuanvideo_vae(models_dir):
    for name in ("ae.safetensors", "hunyuan_video_vae_bf16.safetensors", "sdxl_vae.safetensors"):
        (models_dir / "vae" / name).write_bytes(b"x")
    (names, options) = HunyuanVideoVAELoader.INPUT_TYPES()["required"]["vae_name"]
    assert names[0] == "ae.safetensors" and options["default"] == "hunyuan_video_vae_bf16.safetensors"


def test_an_alpha_channel_is_dropped_before_encoding(models_dir):
    torch.manual_seed(0)
    save_file(CausalVideoVAE(VAEConfig.tiny()).state_dict(), models_dir / "vae" / "tiny.safetensors")
    (vae,) = HunyuanVideoVAELoader().load("tiny.safetensors", "fp32")
    rgb = torch.rand(5, 16, 16, 3)
    rgba = torch.cat([rgb, torch.rand(5, 16, 16, 1)], dim=-1)
    (from_rgb,) = HunyuanVideoVAEEncode().encode(vae, rgb, *AUTO_TILING)
    (from_rgba,) = HunyuanVideoVAEEncode().encode(vae, rgba, *AUTO_TILING)
    assert from_rgb["samples"].shape == (1, 16, 2, 2, 2)
    assert torch.equal(from_rgb["samples"], from_rgba["samples"])
