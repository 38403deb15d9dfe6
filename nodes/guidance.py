"""Guidance extras set on the model: Enhance-A-Video and skip-layer guidance."""

from __future__ import annotations

from ..hunyuan_model.extras import EnhanceAVideo, SkipLayerGuidance, StepRange
from .long_video import with_options
from .types import MODEL

CATEGORY = "HunyuanVideo/guidance"


def _fraction(default: float, text: str) -> tuple:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": text})


def parse_blocks(text: str, what: str) -> tuple[int, ...]:
    """``"0, 5,20"`` -> (0, 5, 20); empty -> ()."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise ValueError(
            f"{what} must be block numbers separated by commas, such as '20' or '0, 5', got {text!r}."
        ) from None


class HunyuanVideoEnhanceAVideo:
    DISPLAY_NAME = "HunyuanVideo Enhance-A-Video"
    DESCRIPTION = (
        "Enhance-A-Video (NUS-HPC-AI-Lab): strengthens how much frames attend to each other, for more detail and "
        "steadier motion at almost no cost. Put it between the model loader and the sampler."
    )
    CATEGORY = CATEGORY
    FUNCTION = "configure"
    RETURN_TYPES = (MODEL,)
    OUTPUT_TOOLTIPS = ("The same model (not a copy) with Enhance-A-Video set; connect it to the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT."}),
                "weight": (
                    "FLOAT",
                    {
                        "default": 2.0,
                        "min": 0.0,
                        "max": 100.0,
                        "step": 0.01,
                        "tooltip": "Strength: the attention output is scaled by (frames + weight) times the mean "
                        "cross-frame attention, never below 1. 2-4 is usual; 0 turns it off.",
                    },
                ),
                "double_blocks": ("BOOLEAN", {"default": True, "tooltip": "Enhance in the 20 double-stream blocks."}),
                "single_blocks": ("BOOLEAN", {"default": True, "tooltip": "Enhance in the 40 single-stream blocks."}),
                "start_percent": _fraction(0.0, "First step to enhance, as a fraction of the steps."),
                "end_percent": _fraction(1.0, "Last step to enhance, as a fraction of the steps."),
            }
        }

    def configure(self, model, weight, double_blocks, single_blocks, start_percent, end_percent):
        steps = StepRange(start_percent, end_percent)
        enhance = EnhanceAVideo(weight, double_blocks, single_blocks, steps) if weight > 0 else None
        return (with_options(model, enhance=enhance),)


class HunyuanVideoSkipLayerGuidance:
    DISPLAY_NAME = "HunyuanVideo Skip-Layer Guidance"
    DESCRIPTION = (
        "Skip-layer / spatio-temporal guidance: each step also runs the model with some blocks skipped and pushes "
        "the video away from that weaker prediction, for sharper structure and motion. Costs one more model pass "
        "per guided step; works with and without true CFG."
    )
    CATEGORY = CATEGORY
    FUNCTION = "configure"
    RETURN_TYPES = (MODEL,)
    OUTPUT_TOOLTIPS = ("The same model (not a copy) with skip-layer guidance set; connect it to the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT."}),
                "scale": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 10.0,
                        "step": 0.01,
                        "tooltip": "How strongly to push away from the skipped-block prediction; 0 = off (no extra "
                        "pass). Around 1-2 is usual; high values oversharpen.",
                    },
                ),
                "double_blocks": (
                    "STRING",
                    {"default": "", "tooltip": "Double-stream blocks to skip (0-19), separated by commas."},
                ),
                "single_blocks": (
                    "STRING",
                    {"default": "20", "tooltip": "Single-stream blocks to skip (0-39), separated by commas."},
                ),
                "start_percent": _fraction(0.2, "First step to guide, as a fraction of the steps."),
                "end_percent": _fraction(0.8, "Last step to guide, as a fraction of the steps."),
            }
        }

    def configure(self, model, scale, double_blocks, single_blocks, start_percent, end_percent):
        guidance = SkipLayerGuidance(
            parse_blocks(double_blocks, "double_blocks"),
            parse_blocks(single_blocks, "single_blocks"),
            scale,
            StepRange(start_percent, end_percent),
        )
        return (with_options(model, skip_layers=guidance if scale > 0 else None),)


NODES = [HunyuanVideoEnhanceAVideo, HunyuanVideoSkipLayerGuidance]
