"""VAE layer details that the parity tests in test_vae.py run only one way on the CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hunyuanvideo_pack.hunyuan_model.vae import CausalVideoVAE, VAEConfig, decode
from hunyuanvideo_pack.hunyuan_model.vae import layers as vae_layers


def test_group_statistics_of_the_gpu_path_are_groupnorms(monkeypatch):
    # GPUs take var_mean (GroupNorm's kernel reduces one group in one thread block); check it against
    # nn.GroupNorm here, directly and through a whole decode.
    generator = torch.Generator().manual_seed(0)
    x = 3 + torch.randn(2, 16, 3, 5, 7, generator=generator)  # a mean far from 0, as after a residual
    norm = nn.GroupNorm(8, 16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(16, generator=generator))
        norm.bias.copy_(0.3 * torch.randn(16, generator=generator))
    vae = CausalVideoVAE(VAEConfig.tiny()).eval()
    z = torch.randn(1, 16, 3, 3, 2, generator=generator)
    native = decode(vae, z)
    monkeypatch.setattr(vae_layers, "_native_moments", vae_layers._reduced_moments)
    torch.testing.assert_close(vae_layers.norm_silu(norm, x)(x), F.silu(norm(x)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(decode(vae, z), native, rtol=0, atol=1e-5)
