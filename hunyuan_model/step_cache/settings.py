"""What a step cache is asked to do (:class:`StepCache`), and the published HunyuanVideo constants it defaults to.

Sources (read, not copied): ali-vilab/TeaCache ``TeaCache4HunyuanVideo/teacache_sample_video.py:82-113``
(the rescaling polynomial and the modulated input of ``double_blocks[0]`` as the indicator, threshold 0.15 at
``:222``); Zehong-Ma/MagCache ``MagCache4HunyuanVideo/magcache_sample_video.py`` at df81cb18 (ratio tables
``:316-318``, picked by video height; threshold 0.24, K 6, retention 0.2 at ``:303-305``; nearest-index mapping
to other step counts ``:20-27``); chengzeyi/ParaAttention ``doc/fastest_hunyuan_video.md:114`` (first-block
threshold 0.06 for HunyuanVideo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS = ("teacache", "magcache", "first_block")

# np.poly1d order: highest power first (TeaCache4HunyuanVideo/teacache_sample_video.py:102).
TEACACHE_COEFFICIENTS = (7.33226126e02, -4.01131952e02, 6.75869174e01, -3.14987800e00, 9.61237896e-02)

# The mean norm ratio of each step's residual to the previous one, calibrated by MagCache's authors over
# 50 steps at 720p and 544p (magcache_sample_video.py:316 and :318); the first step has no predecessor (1.0).
MAGCACHE_RATIOS_720 = (1.0,) + (
    1.0754, 1.27807, 1.11596, 1.09504, 1.05188, 1.00844, 1.05779, 1.00657, 1.04142, 1.03101, 1.00679, 1.02556,
    1.00908, 1.06949, 1.05438, 1.02214, 1.02321, 1.03019, 1.00779, 1.03381, 1.01886, 1.01161, 1.02968, 1.00544,
    1.02822, 1.00689, 1.02119, 1.0105, 1.01044, 1.01572, 1.02972, 1.0094, 1.02368, 1.0226, 0.98965, 1.01588,
    1.02146, 1.0018, 1.01687, 0.99436, 1.00283, 1.01139, 0.97122, 0.98251, 0.94513, 0.97656, 0.90943, 0.85703,
    0.75456,
)  # fmt: skip
MAGCACHE_RATIOS_544 = (1.0,) + (
    1.06971, 1.29073, 1.11245, 1.09596, 1.05233, 1.01415, 1.05672, 1.00848, 1.03632, 1.02974, 1.00984, 1.03028,
    1.00681, 1.06614, 1.05022, 1.02592, 1.01776, 1.02985, 1.00726, 1.03727, 1.01502, 1.00992, 1.03371, 0.9976,
    1.02742, 1.0093, 1.01869, 1.00815, 1.01461, 1.01152, 1.03082, 1.0061, 1.02162, 1.01999, 0.99063, 1.01186,
    1.0217, 0.99947, 1.01711, 0.9904, 1.00258, 1.00878, 0.97039, 0.97686, 0.94315, 0.97728, 0.91154, 0.86139,
    0.76592,
)  # fmt: skip
# MagCache's script has tables for heights 544 and 720 only; other heights take the nearer one.
MAGCACHE_HEIGHT_SPLIT = (544 + 720) // 2

DEFAULT_THRESHOLDS = {"teacache": 0.15, "magcache": 0.24, "first_block": 0.06}
DEFAULT_STARTS = {"teacache": 0.0, "magcache": 0.2, "first_block": 0.0}
MAGCACHE_MAX_SKIPS = 6


@dataclass
class StepCache:
    """Reuse the DiT's block output on steps where it barely changes (attach with ``dataclasses.replace(handle,
    step_cache=StepCache(...))``).

    ``method``: ``teacache`` (accumulated, rescaled change of block 0's modulated input), ``magcache``
    (accumulated error predicted from the published residual-magnitude ratios; decisions depend only on the step)
    or ``first_block`` (block 0 always runs; the rest is reused while block 0's residual stays close to the one of
    the last full step). ``threshold`` None takes the method's published default; 0 turns the cache off (every
    step computes, bit-identical to no cache). ``start`` / ``end`` are fractions of the run's steps: only steps
    ``int(start * steps) <= i < int(end * steps)`` may be reused (None = the method's default: 0.2 for MagCache,
    its retention ratio; 0 otherwise). ``coefficients`` (TeaCache) and ``mag_ratios`` (MagCache; None = the table
    for the video's height) override the published constants; ``max_skips`` is MagCache's K.

    :attr:`last_run` holds the counts of the latest sampling run (as block swap's ``plan`` holds its plan).
    """

    method: str = "teacache"
    threshold: float | None = None
    start: float | None = None
    end: float = 1.0
    coefficients: tuple[float, ...] = TEACACHE_COEFFICIENTS
    mag_ratios: tuple[float, ...] | None = None
    max_skips: int = MAGCACHE_MAX_SKIPS
    last_run: object | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"step cache method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        if self.threshold is None:
            self.threshold = DEFAULT_THRESHOLDS[self.method]
        if self.start is None:
            self.start = DEFAULT_STARTS[self.method]
        if not self.threshold >= 0:
            raise ValueError(f"the step cache threshold must be 0 (off) or more, got {self.threshold}.")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(
                f"step cache start and end are fractions of the steps with 0 <= start <= end <= 1, got start "
                f"{self.start} and end {self.end}."
            )
        if self.max_skips < 1:
            raise ValueError(f"max_skips (MagCache's K) must be at least 1, got {self.max_skips}.")
        if self.mag_ratios is not None and len(self.mag_ratios) < 2:
            raise ValueError(f"mag_ratios needs one ratio per calibrated step (at least 2), got {self.mag_ratios}.")

    def window(self, total_steps: int) -> range:
        """The steps that may be reused: ``int(start * steps)`` up to ``int(end * steps)`` (MagCache's rule)."""
        return range(int(self.start * total_steps), int(self.end * total_steps))

    def ratios_for(self, total_steps: int, video_height: int) -> list[float]:
        """MagCache's ratio of each step: the table (given, or by height) mapped to ``total_steps`` by nearest index."""
        table = self.mag_ratios
        if table is None:
            table = MAGCACHE_RATIOS_544 if video_height <= MAGCACHE_HEIGHT_SPLIT else MAGCACHE_RATIOS_720
        return nearest_steps(list(table), total_steps)


def nearest_steps(table: list[float], steps: int) -> list[float]:
    """``table[round(i * (len - 1) / (steps - 1))]`` for each step (MagCache's ``nearest_interp``); 1 step: the last."""
    if steps == 1:
        return [table[-1]]
    scale = (len(table) - 1) / (steps - 1)
    return [table[_round_half_even(i * scale)] for i in range(steps)]


def _round_half_even(value: float) -> int:
    return int(round(value))  # Python rounds half to even, as numpy's np.round does
