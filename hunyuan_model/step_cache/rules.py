"""The three published skip rules, one object per CFG branch: each says, step by step, compute or reuse.

``True`` from :meth:`decide` means "run every block"; ``False`` means "reuse the cached residual".
``forced`` steps (outside the cache's window) always compute and reset the accumulators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def relative_l1(current: torch.Tensor, reference: torch.Tensor) -> float:
    """``mean|current - reference| / mean|reference|`` over the whole batch, in the tensors' dtype."""
    return ((current - reference).abs().mean() / reference.abs().mean()).item()


def polynomial(coefficients: tuple[float, ...], x: float) -> float:
    """``np.poly1d(coefficients)(x)``: highest power first (Horner)."""
    value = 0.0
    for c in coefficients:
        value = value * x + c
    return value


@dataclass
class TeaCacheRule:
    """TeaCache (``teacache_sample_video.py:98-113``): the first and the last step compute; otherwise the rescaled
    relative L1 change of the indicator since the previous step (computed or not) accumulates, and the step is
    reused while the sum stays below the threshold; a computed step resets the sum."""

    threshold: float
    coefficients: tuple[float, ...]
    total_steps: int
    accumulated: float = 0.0
    previous: torch.Tensor | None = None

    def decide(self, step: int, indicator: torch.Tensor, forced: bool = False) -> bool:
        if forced or step == 0 or step == self.total_steps - 1 or self.previous is None:
            compute = True
        else:
            self.accumulated += polynomial(self.coefficients, relative_l1(indicator, self.previous))
            compute = not (self.threshold > 0 and self.accumulated < self.threshold)
        if compute:
            self.accumulated = 0.0
        self.previous = indicator
        return compute


@dataclass
class MagCacheRule:
    """MagCache (``magcache_sample_video.py:90-102``): from the window's start on, each step multiplies the
    accumulated ratio by its calibrated ratio and adds ``|1 - ratio|`` to the error; the step is reused while
    the error is at most the threshold and at most ``max_skips`` steps were reused in a row."""

    threshold: float
    ratios: list[float]
    max_skips: int
    ratio: float = 1.0
    error: float = 0.0
    skipped: int = 0

    def decide(self, step: int, forced: bool = False) -> bool:
        if not forced:
            self.ratio *= self.ratios[step]
            self.error += abs(1 - self.ratio)
            self.skipped += 1
            if self.threshold > 0 and self.error <= self.threshold and self.skipped <= self.max_skips:
                return False
        self.ratio, self.error, self.skipped = 1.0, 0.0, 0
        return True


@dataclass
class FirstBlockRule:
    """ParaAttention's first-block cache (``first_block_cache/utils.py:221-234, 270-286``): the remaining blocks
    are reused while ``mean|r - r_ref| / mean|r_ref| < threshold``, where ``r`` is block 0's residual on the
    video tokens and ``r_ref`` the one of the last step that computed everything."""

    threshold: float
    reference: torch.Tensor | None = None

    def decide(self, residual: torch.Tensor, forced: bool = False) -> bool:
        similar = (
            not forced
            and self.threshold > 0
            and self.reference is not None
            and relative_l1(residual, self.reference) < self.threshold
        )
        if not similar:
            self.reference = residual
        return not similar
