"""Options that plug into sampling from outside the DiT: RIFLEx, Enhance-A-Video, skip-layer guidance,
context windows over time, and extending a video (see :mod:`.options` for how a run applies them)."""

from ..dit.riflex import Riflex, intrinsic_index
from .context_windows import ContextWindows, WindowedVelocity
from .enhance import EnhanceAVideo, enhance_factor, factor_from_maps, temporal_maps
from .extend import HeldFrames, extend_latent, extension_input, join_extension
from .options import VideoOptions, applied, forward_shape
from .runner import PatchRunner
from .skip_layer import SkipLayerGuidance, SkipLayerVelocity
from .step_range import StepRange

__all__ = [
    "ContextWindows",
    "EnhanceAVideo",
    "HeldFrames",
    "PatchRunner",
    "Riflex",
    "SkipLayerGuidance",
    "SkipLayerVelocity",
    "StepRange",
    "VideoOptions",
    "WindowedVelocity",
    "applied",
    "enhance_factor",
    "extend_latent",
    "extension_input",
    "factor_from_maps",
    "forward_shape",
    "intrinsic_index",
    "join_extension",
    "temporal_maps",
]
