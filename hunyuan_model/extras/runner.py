"""The runner that applies RIFLEx, Enhance-A-Video and block skipping from outside the DiT.

It wraps whatever runner the model has (block swap's, or the plain call) and, per forward, learns the
timestep from ``time_in``'s argument and the latent grid from ``img_in``'s. For each block call it then
may swap the RoPE tables (RIFLEx), set the attention spec's ``enhance`` (Enhance-A-Video) or return the
block's input unchanged (a skipped block, for skip-layer guidance). Everything else is passed through.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch import nn

from ..dit.riflex import Riflex
from .enhance import EnhanceAVideo, enhance_factor


class PatchRunner:
    """Runner protocol (see :class:`~hunyuan_model.dit.model.HunyuanVideoTransformer`) around ``inner``.

    ``config`` is the model's :class:`~hunyuan_model.dit.config.DiTConfig`; ``schedule`` the steps'
    timesteps (for the enhancement's step range).
    """

    def __init__(
        self,
        inner,
        config,
        schedule: torch.Tensor,
        riflex: Riflex | None = None,
        enhance: EnhanceAVideo | None = None,
    ) -> None:
        self.inner, self.config, self.schedule = inner, config, schedule
        self.riflex, self.enhance = riflex, enhance
        self._skip: frozenset[str] = frozenset()
        self._grid: tuple[int, int, int] | None = None
        self._enhancing = False
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @contextlib.contextmanager
    def skipping(self, names: frozenset[str]) -> Iterator[None]:
        """Within the block, the blocks ``names`` return their input unchanged."""
        self._skip = names
        try:
            yield
        finally:
            self._skip = frozenset()

    def __call__(self, name: str, module: nn.Module, *args: Any) -> Any:
        if name == "time_in":
            self._enhancing = self.enhance is not None and self.enhance.steps.contains(args[0], self.schedule)
        elif name == "img_in":
            latents = args[0]  # b c t h w
            self._grid = tuple(size // p for size, p in zip(latents.shape[2:], self.config.patch_size))
        elif name in self._skip:
            return args[0] if name.startswith("single_blocks.") else (args[0], args[1])
        if name.startswith(("double_blocks.", "single_blocks.")):
            args = self._patched(name, args)
        return self.inner(name, module, *args)

    def _patched(self, name: str, args: tuple) -> tuple:
        """Block args end with ``(..., rope, attn)``."""
        *head, rope, attn = args
        c = self.config
        if self.riflex is not None and self.riflex.applies(self._grid[0], c.rope_theta, c.rope_dim_list[0]):
            rope = self._riflex_tables(rope[0].device)
        if self._enhancing and self.enhance.acts_in(name):
            attn = dataclasses.replace(
                attn, enhance=partial(enhance_factor, frames=self._grid[0], weight=self.enhance.weight)
            )
        return (*head, rope, attn)

    def _riflex_tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (self._grid, str(device))
        if key not in self._tables:
            c = self.config
            self._tables[key] = tuple(
                t.to(device) for t in self.riflex.tables(self._grid, c.rope_dim_list, c.rope_theta)
            )
        return self._tables[key]
