"""DPM-Solver++ 2M and UniPC (bh2, order 2) in flow-matching form: multistep solvers over the data prediction.

A flow model predicts the velocity ``v``; both solvers work on the clean-video prediction
``x0 = x - sigma * v`` and step in the half log-SNR ``lambda = log((1 - sigma) / sigma)``, with
``alpha = 1 - sigma`` (diffusers with ``use_flow_sigmas=True`` and ``prediction_type="flow_prediction"``:
``scheduling_dpmsolver_multistep.py:592-594`` (alpha, sigma) and ``:802-804`` (x0), diffusers 0.42.1).
Each step calls the model once, like Euler; the second-order terms reuse the previous steps' ``x0``.

- **DPM-Solver++ 2M** (midpoint), as ``DPMSolverMultistepScheduler(solver_order=2)``: first order at the first
  and the last step (``:1239-1243``, ``lower_order_final`` with a final sigma of 0), otherwise
  ``x <- (s_t / s_s) x - a_t (e^-h - 1) (D0 + D1 / 2)`` with ``D0 = x0_i``, ``D1 = (x0_i - x0_{i-1}) / r``,
  ``r = h_prev / h`` (``:847-920``, ``:921-990``). Its first-order step is exactly Euler's.
- **UniPC** (``UniPCMultistepScheduler(solver_order=2, solver_type="bh2")``): a predictor of order
  ``min(2, steps left, steps done + 1)`` (``scheduling_unipc_multistep.py:1210-1215``, ``:833-960``), and from the
  second step on a corrector that refines the previous step's result with the new prediction before stepping
  on (``:1190-1200``, ``:962-1098``). The corrected ``x`` is what the next step uses; the model saw the uncorrected one.

A sigma of 1 (pure noise) has an infinite log-SNR: it counts as ``1 - 1e-6`` there, as diffusers' UniPC does
(``scheduling_unipc_multistep.py:437-440``). A step to sigma 0 returns that step's ``x0`` (both schedulers'
first-order step to 0). Coefficients are computed in float64, tensors stay float32.
"""

from __future__ import annotations

import math

import torch

from .euler import StepCallback, Velocity
from .schedule import timesteps

_SIGMA_MAX = 1.0 - 1e-6
_ORDER = 2


def half_log_snr(sigma: float) -> float:
    """``log((1 - sigma) / sigma)`` with sigma at most ``1 - 1e-6`` (``+inf`` at sigma 0)."""
    sigma = min(sigma, _SIGMA_MAX)
    return math.inf if sigma <= 0 else math.log1p(-sigma) - math.log(sigma)


def dpmpp_2m_sample(
    velocity: Velocity, x: torch.Tensor, sigmas: torch.Tensor, on_step: StepCallback | None = None
) -> torch.Tensor:
    """DPM-Solver++ 2M from ``sigmas[0]`` to ``sigmas[-1]`` (the module doc has the rule); ``on_step`` as in Euler."""
    x, s, steps_t = _prepare(x, sigmas)
    lam = [half_log_snr(v) for v in s]
    total = len(s) - 1
    previous: torch.Tensor | None = None
    for i in range(total):
        x0 = _predict_x0(velocity, x, steps_t[i], s[i])
        if on_step is not None:
            on_step(i + 1, total, x0)
        if s[i + 1] <= 0:
            x = x0
        elif s[i + 1] != s[i]:
            h = lam[i + 1] - lam[i]
            decay = -math.expm1(-h) * (1 - s[i + 1])  # -alpha_t (e^-h - 1)
            d = x0
            if previous is not None and i < total - 1:
                r = (lam[i] - lam[i - 1]) / h
                d = x0 + (x0 - previous) * (0.5 / r)
            x = x * (s[i + 1] / s[i]) + d * decay
        previous = x0
    return x


def unipc_sample(
    velocity: Velocity, x: torch.Tensor, sigmas: torch.Tensor, on_step: StepCallback | None = None
) -> torch.Tensor:
    """UniPC (bh2, order 2) from ``sigmas[0]`` to ``sigmas[-1]`` (the module doc has the rule)."""
    x, s, steps_t = _prepare(x, sigmas)
    lam = [half_log_snr(v) for v in s]
    total = len(s) - 1
    preds: list[torch.Tensor] = []  # x0 of every step so far
    last_x, last_order = x, 0
    for i in range(total):
        x0 = _predict_x0(velocity, x, steps_t[i], s[i])
        if on_step is not None:
            on_step(i + 1, total, x0)
        if i > 0:
            x = _unic(last_x, x0, preds, lam, s, i, last_order)
        preds.append(x0)
        order = min(_ORDER, total - i, len(preds))
        last_x, last_order = x, order
        x = _unip(x, preds, lam, s, i, order)
        del preds[:-_ORDER]
    return x


def _unip(x: torch.Tensor, preds: list[torch.Tensor], lam: list[float], s: list[float], i: int, order: int):
    """The predictor from step ``i`` to ``i + 1`` (``multistep_uni_p_bh_update``)."""
    if s[i + 1] <= 0:
        return preds[-1]
    if s[i + 1] == s[i]:
        return x
    m0 = preds[-1]
    h = lam[i + 1] - lam[i]
    phi = math.expm1(-h)  # h * phi_1(-h), and B(h) for bh2
    x = x * (s[i + 1] / s[i]) - m0 * ((1 - s[i + 1]) * phi)
    if order == 2:
        rk = (lam[i - 1] - lam[i]) / h
        x = x - (preds[-2] - m0) * ((1 - s[i + 1]) * phi * 0.5 / rk)
    return x


def _unic(
    last_x: torch.Tensor,
    x0: torch.Tensor,
    preds: list[torch.Tensor],
    lam: list[float],
    s: list[float],
    i: int,
    order: int,
) -> torch.Tensor:
    """The corrector of step ``i - 1``'s result ``last_x`` with this step's prediction ``x0`` (``multistep_uni_c_bh_update``)."""
    m0 = preds[-1]
    if s[i] == s[i - 1]:
        return last_x
    h = lam[i] - lam[i - 1]
    hh = -h
    phi = math.expm1(hh)
    alpha = 1 - s[i]
    x = last_x * (s[i] / s[i - 1]) - m0 * (alpha * phi)
    if order == 1:
        return x - (x0 - m0) * (alpha * phi * 0.5)
    rk = (lam[i - 2] - lam[i - 1]) / h
    b1 = (phi / hh - 1) / phi
    b2 = ((phi / hh - 1) / hh - 0.5) * 2 / phi
    rho0 = (b1 - b2) / (1 - rk)
    rho1 = b1 - rho0
    return x - ((preds[-2] - m0) * (rho0 / rk) + (x0 - m0) * rho1) * (alpha * phi)


def _prepare(x: torch.Tensor, sigmas: torch.Tensor) -> tuple[torch.Tensor, list[float], torch.Tensor]:
    x = x.float()
    sigmas = sigmas.to(torch.float32)
    return x, sigmas.tolist(), timesteps(sigmas.to(x.device))


def _predict_x0(velocity: Velocity, x: torch.Tensor, t: torch.Tensor, sigma: float) -> torch.Tensor:
    return x - velocity(x, t) * sigma
