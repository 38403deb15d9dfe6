"""Skip-layer guidance: push the prediction away from the model with some blocks skipped.

Spatio-temporal guidance (STG-R, junhahyung/STGuidance, offered by kijai's HyVideoSTG) and skip-layer
guidance (SD 3.5's SLG; kijai's HunyuanVideoSLG) both compare the prompt's prediction with a "weakened"
one from the same model where chosen blocks are skipped (their input passes through unchanged; kijai:
hyvideo/modules/models.py:968-999, and the STG combination at pipeline_hunyuan_video.py:1006-1010).
This pack runs the weakened pass as an extra forward on the positive prompt and adds

    v = v_guided + scale * (v_positive - v_skipped)

to whatever guidance runs already (embedded guidance, or true CFG ``v_neg + cfg (v_pos - v_neg)``),
so it works with and without true CFG. Scale 0, or a step outside the range, costs nothing and
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .step_range import StepRange


@dataclass(frozen=True)
class SkipLayerGuidance:
    """Which blocks the weakened pass skips (0-based indices), how strongly to push away from it, when."""

    double_blocks: tuple[int, ...] = ()
    single_blocks: tuple[int, ...] = (20,)
    scale: float = 1.0
    steps: StepRange = field(default_factory=lambda: StepRange(0.2, 0.8))

    def __post_init__(self) -> None:
        if not self.scale >= 0:
            raise ValueError(f"the skip-layer guidance scale must be 0 or more (about 1 to 3), got {self.scale}.")

    def names(self, double_count: int, single_count: int) -> frozenset[str]:
        """The runner names of the skipped blocks, checked against the model's block counts."""
        for kind, chosen, count in (
            ("double", self.double_blocks, double_count),
            ("single", self.single_blocks, single_count),
        ):
            wrong = [i for i in chosen if not 0 <= i < count]
            if wrong:
                raise ValueError(
                    f"skip-layer guidance: {kind} block(s) {wrong} do not exist; this model has {count} {kind} "
                    f"blocks, numbered 0 to {count - 1}."
                )
        return frozenset(
            [f"double_blocks.{i}" for i in self.double_blocks] + [f"single_blocks.{i}" for i in self.single_blocks]
        )


class SkipLayerVelocity:
    """The guided velocity plus skip-layer guidance (see the module doc).

    ``base`` is a :class:`~hunyuan_model.sampling.GuidedVelocity` (its ``predictions`` and
    ``prompt_velocity``); ``runner`` the :class:`.runner.PatchRunner` that skips ``names`` while its
    ``skipping`` is set; ``schedule`` the steps' timesteps.
    """

    def __init__(self, base, runner, guidance: SkipLayerGuidance, names: frozenset[str], schedule: torch.Tensor):
        self.base, self.runner, self.guidance, self.names, self.schedule = base, runner, guidance, names, schedule

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.guidance.scale == 0 or not self.names or not self.guidance.steps.contains(t, self.schedule):
            return self.base(x, t)
        positive, negative = self.base.predictions(x, t)
        guided = positive if negative is None else negative + self.base.cfg_scale * (positive - negative)
        with self.runner.skipping(self.names):
            skipped = self.base.prompt_velocity(x, t, self.base.positive)
        return guided + self.guidance.scale * (positive - skipped)
