"""One sampling run with a step cache: a runner wrapper that skips the DiT's blocks on reused steps.

The DiT calls every top-level module through its runner (``time_in`` ... ``double_blocks.N`` ...
``single_blocks.N`` ... ``final_layer``), so the cache works from outside the model: on a reused step
the wrapper returns the blocks' inputs unchanged without calling the inner runner (so block swap copies
nothing for them), and hands ``final_layer`` the video tokens plus the residual that the blocks added on
the last computed step, ``img_out - img_in`` (TeaCache's and MagCache's ``previous_residual``; for the
first-block cache the residual of the blocks after the first).

**Steps and branches.** The sampler wraps its velocity with :meth:`StepCacheSession.counting`, so each
call is one step. Each model forward within a step is one *branch* with its own state: with true CFG run
one prompt after the other, the positive and negative prompts keep separate accumulators and residuals;
with CFG batched into one forward, both prompts (and all videos of a batch) share one decision, as
TeaCache and MagCache decide over the whole batch. A session lives for one run: nothing carries over.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..dit.layers import norm_modulate
from ..dit.token_replace import TokenReplaceVec, split_vec
from .rules import FirstBlockRule, MagCacheRule, TeaCacheRule
from .settings import StepCache

log = logging.getLogger("HunyuanVideo.step_cache")

Runner = Callable[..., Any]
FIRST_BLOCK = "double_blocks.0"
FINAL = "final_layer"


@dataclass
class CacheStats:
    """What a run did: ``computed`` and ``reused`` model forwards, and each decision as (step, branch, computed)."""

    computed: int = 0
    reused: int = 0
    decisions: list[tuple[int, int, bool]] = field(default_factory=list)

    def describe(self, cache: StepCache) -> str:
        total = self.computed + self.reused
        return (
            f"{cache.method} (threshold {cache.threshold:g}): {self.computed} of {total} model passes computed "
            f"the full model, {self.reused} reused the cache"
        )


@dataclass
class _Branch:
    rule: Any
    skip: bool = False
    start: torch.Tensor | None = None  # the video tokens the cached residual is measured from
    residual: torch.Tensor | None = None


class StepCacheSession:
    """The per-run state of a :class:`StepCache` on ``model`` for ``total_steps`` steps of latents ``latent_shape``,
    computing on ``device`` (where TeaCache's indicator runs)."""

    def __init__(
        self,
        cache: StepCache,
        model: nn.Module,
        total_steps: int,
        latent_shape: tuple[int, ...],
        device: torch.device | None = None,
    ) -> None:
        self.cache = cache
        self.total_steps = total_steps
        self.window = cache.window(total_steps)
        self.first = model.run_order()[0]
        self.step = -1
        self.branch_index = -1
        self.branches: dict[int, _Branch] = {}
        self.stats = CacheStats()
        self._ratios = cache.ratios_for(total_steps, latent_shape[-2] * 8) if cache.method == "magcache" else None
        self._modulation = _device_modulation(model, device) if cache.method == "teacache" else None
        cache.last_run = self.stats

    def counting(self, velocity: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``velocity`` that marks the start of each step (one call per step)."""

        def stepped(*args: Any) -> torch.Tensor:
            self.step += 1
            self.branch_index = -1
            return velocity(*args)

        return stepped

    def wrap(self, inner: Runner) -> Runner:
        """The runner to install: decides at block 0, skips blocks on reused steps, adds the residual at the end."""

        def run(name: str, module: nn.Module, *args: Any) -> Any:
            if name == self.first:
                self.branch_index += 1
                self._branch().skip = False
                return inner(name, module, *args)
            if name == FIRST_BLOCK:
                return self._first_block(inner, name, module, args)
            branch = self._branch()
            if name == FINAL:
                return inner(name, module, self._final_input(branch, args[0]), *args[1:])
            if branch.skip and name.startswith("double_blocks."):
                return args[0], args[1]
            if branch.skip and name.startswith("single_blocks."):
                return args[0]
            return inner(name, module, *args)

        return run

    def summary(self) -> str:
        return self.stats.describe(self.cache)

    def _branch(self) -> _Branch:
        index = max(self.branch_index, 0)
        if index not in self.branches:
            self.branches[index] = _Branch(self._new_rule())
        return self.branches[index]

    def _new_rule(self) -> Any:
        c = self.cache
        if c.method == "teacache":
            return TeaCacheRule(c.threshold, c.coefficients, self.total_steps)
        if c.method == "magcache":
            return MagCacheRule(c.threshold, self._ratios, c.max_skips)
        return FirstBlockRule(c.threshold)

    def _first_block(self, inner: Runner, name: str, module: nn.Module, args: tuple) -> Any:
        branch, step = self._branch(), max(self.step, 0)
        # nothing to reuse yet (a window from step 0, a new CFG branch): compute
        forced = step not in self.window or branch.residual is None
        img, vec = args[0], args[2]
        if self.cache.method == "first_block":
            out = inner(name, module, *args)
            compute = branch.rule.decide(out[0] - img, forced)
            branch.start = out[0]
        else:
            if self.cache.method == "teacache":
                compute = branch.rule.decide(step, self._indicator(module, img, vec), forced)
            else:
                compute = branch.rule.decide(step, forced)
            branch.start = img
            out = inner(name, module, *args) if compute else (args[0], args[1])
        branch.skip = not compute
        self.stats.decisions.append((step, self.branch_index, compute))
        if compute:
            self.stats.computed += 1
        else:
            self.stats.reused += 1
        return out

    def _indicator(self, block: nn.Module, img: torch.Tensor, vec: torch.Tensor | TokenReplaceVec) -> torch.Tensor:
        """Block 0's modulated video input: ``LayerNorm(img) * (1 + scale1) + shift1`` of its ``img_mod``
        (under token replacement, with the ``vec`` of every token but the first frame's: the indicator only
        has to follow how the input changes from step to step)."""
        modulation = self._modulation if self._modulation is not None else block.img_mod
        shift, scale = modulation(split_vec(vec)[0])[:2]
        return norm_modulate(img, shift, scale)

    def _final_input(self, branch: _Branch, img: torch.Tensor) -> torch.Tensor:
        if branch.skip:
            return img + branch.residual
        branch.residual = img - branch.start
        branch.start = None
        return img


def _device_modulation(model: nn.Module, device: torch.device | None) -> nn.Module | None:
    """A compute-device copy of block 0's ``img_mod`` when block swap keeps block 0 elsewhere, so that
    TeaCache's indicator never makes block swap copy block 0 (None: block 0 is already there)."""
    block = model.get_submodule(FIRST_BLOCK)
    weights = next(block.img_mod.parameters(), None)
    if device is None or weights is None or _same_device(weights.device, device):
        return None
    return copy.deepcopy(block.img_mod).to(device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)
