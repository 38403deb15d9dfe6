"""The suite's wall-time budget: run tasks in priority order, skip (with a note) those predicted not to fit.

Predictions come from what was measured so far: a DiT forward from its FLOP count at the rate the
last forward of the same weights and attention reached (or any forward, or ``FIRST_RATE`` before the
first), anything else from a fixed first guess until a task of its kind has run once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

FIRST_RATE = 300e12  # FLOP/s assumed before the first forward is measured (H200, sdpa: a guess on the low side)


@dataclass
class Budget:
    seconds: float
    start: float = field(default_factory=time.perf_counter)
    rates: dict[tuple[str, str], float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def allows(self, task: str, predicted: float) -> bool:
        """Whether ``task``, predicted to take ``predicted`` seconds, fits in what is left; notes it if not."""
        if predicted <= self.left():
            return True
        note = {"task": task, "predicted_s": round(predicted, 1), "left_s": round(self.left(), 1)}
        self.skipped.append(note)
        print(
            f"  skipped {task}: predicted {predicted:.0f} s, {max(self.left(), 0):.0f} s of the budget left", flush=True
        )
        return False

    def forward_seconds(self, flops: int, weights: str, attention: str) -> float:
        rate = self.rates.get((weights, attention)) or self.rates.get(("any", "any"), FIRST_RATE)
        return flops / rate

    def saw_forward(self, flops: int, seconds: float, weights: str, attention: str) -> None:
        self.rates[weights, attention] = self.rates["any", "any"] = flops / seconds

    def guess(self, kind: str, first_guess: float) -> float:
        """Seconds a task of ``kind`` took last time, or ``first_guess``."""
        return self.durations.get(kind, first_guess)

    def saw(self, kind: str, seconds: float) -> None:
        self.durations[kind] = seconds
