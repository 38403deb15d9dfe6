"""What the handle asks to wrap around the model for one sampling run: block compile and the step cache.

They go around the runner the placement installed (block swap's), the step cache outermost, so a reused
step never reaches the compiled blocks or the swap, and compiled blocks still get their weights swapped in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from ..dit.model import HunyuanVideoTransformer
from ..handle import TransformerHandle
from ..step_cache import StepCacheSession
from .euler import Velocity

log = logging.getLogger("HunyuanVideo")


@contextlib.contextmanager
def model_hooks(
    handle: TransformerHandle, model: HunyuanVideoTransformer, total_steps: int, latent_shape: tuple[int, ...]
) -> Iterator[Callable[[Velocity], Velocity]]:
    """Install the handle's wrappers for the block; yields what the velocity must be wrapped with (step counting).

    Logs the step cache's counts at the end, also when the run is cancelled.
    """
    runner = model.runner
    if handle.compile is not None:
        runner = handle.compile.wrap(runner)
    session = None
    if handle.step_cache is not None:
        session = StepCacheSession(handle.step_cache, model, total_steps, latent_shape, handle.compute_device)
        runner = session.wrap(runner)
    with model.using_runner(runner):
        try:
            yield session.counting if session is not None else _unchanged
        finally:
            if session is not None:
                log.info("HunyuanVideo step cache %s", session.summary())


def _unchanged(velocity: Velocity) -> Velocity:
    return velocity
