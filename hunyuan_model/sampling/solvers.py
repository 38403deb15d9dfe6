"""The ODE solvers that follow the flow, by name, and the log-SNR the multistep ones step in.

Every solver calls the model once per step and keeps ``x`` in float32. ``euler`` is the first-order
method Tencent's pipeline uses; ``dpmpp_2m`` and ``unipc`` are second-order multistep methods that
reuse the previous step's prediction, in their flow-matching forms (see :mod:`.multistep`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .euler import StepCallback, Velocity, euler_sample
from .multistep import dpmpp_2m_sample, unipc_sample

Solver = Callable[[Velocity, torch.Tensor, torch.Tensor, StepCallback | None], torch.Tensor]

SOLVERS: dict[str, Solver] = {"euler": euler_sample, "dpmpp_2m": dpmpp_2m_sample, "unipc": unipc_sample}
SOLVER_NAMES = tuple(SOLVERS)


def check_solver(name: str) -> str:
    if name not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVER_NAMES)}, got {name!r}.")
    return name


def solve(
    name: str, velocity: Velocity, x: torch.Tensor, sigmas: torch.Tensor, on_step: StepCallback | None
) -> torch.Tensor:
    """Follow ``velocity`` with the solver ``name`` from ``sigmas[0]`` to ``sigmas[-1]``."""
    return SOLVERS[check_solver(name)](velocity, x, sigmas, on_step)
