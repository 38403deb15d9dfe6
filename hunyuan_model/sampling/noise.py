"""Starting noise: reproducible from a seed on any device, one generator per video in a batch.

**Seed rule.** Video ``i`` of a batch gets its own CPU generator seeded with ``seed + index_i``
(modulo 2**64), where ``index_i`` is ``i``, or the latent's ``batch_index`` entry when it has one
(ComfyUI sets that when a latent was picked out of a batch). So video 3 of a batch made with seed 100
is the video that seed 103 makes alone, as in Tencent's pipeline (which seeds ``seed + i``), and a
latent taken out of a batch keeps its noise. The noise is float32 standard normal drawn on the CPU
and only then moved, so a seed gives the same video on every device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SEED_MODULUS = 2**64


def seeded_noise(shape: Sequence[int], seed: int, batch_index: Sequence[int] | None = None) -> torch.Tensor:
    """Float32 noise of ``shape`` ``[B, ...]`` on the CPU, sample ``i`` from seed ``seed + batch_index[i]``."""
    batch, *sample_shape = shape
    indices = list(range(batch)) if batch_index is None else [int(i) for i in batch_index]
    if len(indices) != batch:
        raise ValueError(f"batch_index has {len(indices)} entries for a batch of {batch}: {indices}.")
    if not isinstance(seed, int) or seed < 0 or any(i < 0 for i in indices):
        raise ValueError(f"seed and batch indices must be whole numbers of at least 0, got {seed!r} and {indices}.")
    samples = [
        torch.randn(sample_shape, generator=torch.Generator().manual_seed((seed + i) % SEED_MODULUS)) for i in indices
    ]
    return torch.stack(samples)


def add_noise(clean: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The flow model's input at noise level ``sigma``: ``sigma * noise + (1 - sigma) * clean``.

    At ``sigma`` 1 this is exactly ``noise`` (text-to-video ignores the latent's content).
    """
    return sigma * noise + (1 - sigma) * clean
