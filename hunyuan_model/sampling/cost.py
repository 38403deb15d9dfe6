"""What sampling costs in arithmetic, and how fast a device does it: for telling a user, before the first
step, that a requested size would take hours (issue 17: 4096x4096x129 sat 12 minutes in step one on a
CPU before anyone knew).

FLOPs of one forward, counting a multiply-add as two: every token passes each block's Linear layers
(a double block has two streams of QKV + output projection + MLP, ``4 h^2 + 2 h m`` weights each, a
single block one such set), and attention compares every pair of tokens (``4 n^2 h`` per block: QK^T
and the weighted sum). Modulation and the embedders act on one vector or on the small text input and
are left out. At the released size and 848x480x73 (30,466 tokens) this gives 1.2 PFLOP per forward.
"""

from __future__ import annotations

import time

import torch

from ..dit.config import DiTConfig


def forward_flops(config: DiTConfig, latent_shape: tuple[int, ...], text_tokens: int) -> float:
    """FLOPs of one DiT forward over latents ``[B, 16, T, H, W]`` with ``text_tokens`` prompt tokens."""
    b, _, t, h, w = latent_shape
    pt, ph, pw = config.patch_size
    n = (t // pt) * (h // ph) * (w // pw) + text_tokens
    hidden, mlp = config.hidden_size, config.mlp_hidden
    streams = 2 * config.double_blocks + config.single_blocks
    linear = 2 * n * streams * (4 * hidden * hidden + 2 * hidden * mlp)
    attention = 4 * n * n * hidden * (config.double_blocks + config.single_blocks)
    return float(b * (linear + attention))


def matmul_speed(device: torch.device, dtype: torch.dtype) -> float:
    """Measured FLOP/s of a square matmul on ``device`` in ``dtype`` (about 0.1 s on a CPU)."""
    size = 2048 if device.type == "cuda" else 512  # large enough to keep the device busy
    a = torch.randn(size, size, device=device).to(dtype)
    repeats = 0
    a @ a  # warm-up: kernels chosen, memory allocated
    _synchronize(device)
    started = time.perf_counter()
    while repeats < 3 or time.perf_counter() - started < 0.05:
        a @ a
        repeats += 1
    _synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
