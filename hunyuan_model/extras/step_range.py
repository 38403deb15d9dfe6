"""Which sampling steps an option acts on: a start and end fraction of the schedule."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepRange:
    """Steps ``i`` of ``total`` with ``start <= i / total <= end`` (0 = the first step, as in kijai's
    wrapper: pipeline_hunyuan_video.py:780 compares the same step fraction, ends included)."""

    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(
                f"start and end must satisfy 0 <= start <= end <= 1 (fractions of the steps), got start "
                f"{self.start} and end {self.end}."
            )

    def contains(self, timestep: torch.Tensor | float, schedule: torch.Tensor) -> bool:
        """Whether the model call at ``timestep`` (0..1000) falls in the range of ``schedule``, the
        timesteps of the steps in order (``sigmas[:-1] * 1000``). A call between two steps (a
        multi-stage solver) counts as the later one."""
        t = float(torch.as_tensor(timestep).reshape(-1)[0])
        step = int((schedule > t).sum())  # the schedule falls, so this is the step's index
        return self.start <= step / len(schedule) <= self.end
