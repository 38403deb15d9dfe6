"""Fitting the DiT to the card: block swap with prefetch, and the memory plan that picks what to swap.

- :class:`BlockSwap` is a :class:`~..handle.Placement`: give it to a :class:`~..handle.TransformerHandle`
  (``dataclasses.replace(handle, placement=BlockSwap(...))``) and the sampler's ``handle.running(...)``
  swaps the chosen blocks in as they run, prefetching the next one on a side CUDA stream.
- :func:`plan_block_swap` is the ``auto`` rule, :func:`estimate` and :func:`activation_bytes` the
  memory model behind it (formula in :mod:`.memory_plan`).
"""

from .block_swap import BlockSwap, SwapRunner, swapped_names
from .memory_plan import (
    MemoryEstimate,
    ModelSizes,
    SwapChoice,
    SwapPlan,
    Workload,
    activation_bytes,
    estimate,
    plan_block_swap,
)

__all__ = [
    "BlockSwap",
    "MemoryEstimate",
    "ModelSizes",
    "SwapChoice",
    "SwapPlan",
    "SwapRunner",
    "Workload",
    "activation_bytes",
    "estimate",
    "plan_block_swap",
    "swapped_names",
]
