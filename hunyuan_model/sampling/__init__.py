"""Flow-matching sampling: the shifted sigma schedule, seeded noise and Euler and multistep solvers over the DiT."""

from .euler import StepCallback, euler_sample
from .noise import add_noise, seeded_noise
from .sampler import SamplerSettings, check_inputs, sample
from .schedule import check_sigmas, flow_sigmas, shift_sigmas, timesteps
from .solvers import SOLVER_NAMES, solve
from .velocity import GuidedVelocity, PromptBatch

__all__ = [
    "SOLVER_NAMES",
    "GuidedVelocity",
    "PromptBatch",
    "SamplerSettings",
    "StepCallback",
    "add_noise",
    "check_inputs",
    "check_sigmas",
    "euler_sample",
    "flow_sigmas",
    "sample",
    "seeded_noise",
    "shift_sigmas",
    "solve",
    "timesteps",
]
