"""Shared pieces for tests that sample with a tiny DiT: model, prompts, handles (float32 on the CPU)."""

from __future__ import annotations

import dataclasses

import torch

from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds
from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights
from hunyuanvideo_pack.hunyuan_model.extras import VideoOptions
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle

CPU = torch.device("cpu")


def tiny_model(seed: int = 1, **overrides) -> HunyuanVideoTransformer:
    """Released head size and RoPE split (16, 56, 56), 2 + 2 blocks, float32."""
    config = DiTConfig.tiny(**overrides)
    return init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=seed)


def prompt(config: DiTConfig, seed: int, tokens: int = 5) -> PromptEmbeds:
    g = torch.Generator().manual_seed(seed)
    return PromptEmbeds(
        text_states=torch.randn(1, tokens, config.text_dim, generator=g),
        text_mask=torch.ones(1, tokens, dtype=torch.int64),
        pooled=torch.randn(1, config.pooled_dim, generator=g),
    )


def embeds(config: DiTConfig, cfg_scale: float = 1.0) -> TextEmbeds:
    negative = prompt(config, seed=4, tokens=3) if cfg_scale > 1 else None
    return TextEmbeds(prompt(config, seed=3), negative, cfg_scale)


def handle(model: HunyuanVideoTransformer, options: VideoOptions | None = None, **fields) -> TransformerHandle:
    plain = TransformerHandle(model, CPU, CPU, description="tiny test DiT", **fields)
    return plain if options is None else dataclasses.replace(plain, options=options)
