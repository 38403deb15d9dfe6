"""Step caching (TeaCache, MagCache, first-block cache): reuse the DiT's block output on steps where it barely
changes. Attached to a model handle as :class:`StepCache`; each sampling run gets a fresh
:class:`StepCacheSession`, which wraps the model's runner from outside."""

from .rules import FirstBlockRule, MagCacheRule, TeaCacheRule, polynomial, relative_l1
from .session import CacheStats, StepCacheSession
from .settings import (
    DEFAULT_THRESHOLDS,
    MAGCACHE_RATIOS_544,
    MAGCACHE_RATIOS_720,
    METHODS,
    TEACACHE_COEFFICIENTS,
    StepCache,
    nearest_steps,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAGCACHE_RATIOS_544",
    "MAGCACHE_RATIOS_720",
    "METHODS",
    "TEACACHE_COEFFICIENTS",
    "CacheStats",
    "FirstBlockRule",
    "MagCacheRule",
    "StepCache",
    "StepCacheSession",
    "TeaCacheRule",
    "nearest_steps",
    "polynomial",
    "relative_l1",
]
