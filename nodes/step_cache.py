"""The step cache node: a loaded DiT in, the same DiT set to reuse its block output on steps that barely change."""

from __future__ import annotations

import dataclasses

from ..hunyuan_model.handle import TransformerHandle
from ..hunyuan_model.step_cache import DEFAULT_THRESHOLDS, METHODS, StepCache
from .types import MODEL

CATEGORY = "HunyuanVideo/model"
METHOD_DEFAULT = -1.0


class HunyuanVideoStepCache:
    DISPLAY_NAME = "HunyuanVideo Step Cache"
    DESCRIPTION = (
        "Speeds sampling up by skipping the DiT's blocks on steps where their output barely changes and reusing "
        "the last computed change instead (TeaCache, MagCache or first-block cache, with the authors' published "
        "HunyuanVideo settings). Put it between the model loader (or block swap) and the sampler; the sampler "
        "logs how many steps computed the full model. Higher thresholds skip more and change the video more."
    )
    CATEGORY = CATEGORY
    FUNCTION = "configure"
    RETURN_TYPES = (MODEL,)
    OUTPUT_TOOLTIPS = ("The same model (not a copy), set to cache steps while sampling; connect it to the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        published = ", ".join(f"{m} {t:g}" for m, t in DEFAULT_THRESHOLDS.items())
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT, from HunyuanVideo Model Loader or Block Swap."}),
                "method": (
                    list(METHODS),
                    {
                        "default": "teacache",
                        "tooltip": "teacache: skips while the accumulated change of the first block's input stays "
                        "small (1.6x at 0.1, 2.1x at 0.15 reported). magcache: skips by the authors' measured "
                        "per-step change of the output (2.8x at 720p reported). first_block: always runs the first "
                        "block and skips the rest while its output changes little.",
                    },
                ),
                "threshold": (
                    "FLOAT",
                    {
                        "default": METHOD_DEFAULT,
                        "min": METHOD_DEFAULT,
                        "max": 10.0,
                        "step": 0.01,
                        "tooltip": f"How much change may be skipped. -1 = the method's published value ({published}). "
                        "0 = off (every step computes, the same video as without this node).",
                    },
                ),
                "start": (
                    "FLOAT",
                    {
                        "default": METHOD_DEFAULT,
                        "min": METHOD_DEFAULT,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "Fraction of the steps after which steps may be skipped; the early steps that "
                        "lay out the video always compute. -1 = the method's default (magcache 0.2, others 0).",
                    },
                ),
                "end": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.01,
                        "tooltip": "Fraction of the steps after which every step computes again (1.0 = to the end).",
                    },
                ),
            }
        }

    def configure(self, model: TransformerHandle, method: str, threshold: float, start: float, end: float):
        if not isinstance(model, TransformerHandle):
            raise ValueError(
                f"model must be a loaded HunyuanVideo DiT (from HunyuanVideo Model Loader), got {type(model).__name__}."
            )
        cache = StepCache(
            method=method,
            threshold=None if threshold == METHOD_DEFAULT else threshold,
            start=None if start == METHOD_DEFAULT else start,
            end=end,
        )
        # A new handle around the same module: ComfyUI caches the input node's output, which must not change.
        return (dataclasses.replace(model, step_cache=cache),)
