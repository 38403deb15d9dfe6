"""The block swap node: a loaded DiT in, the same DiT set to swap blocks from RAM while sampling out."""

from __future__ import annotations

import dataclasses
import logging

from ..hunyuan_model.handle import TransformerHandle
from ..hunyuan_model.offload import BlockSwap, SwapChoice
from ..hunyuan_model.offload.memory_plan import clip_choice
from . import comfy_env
from .types import MODEL

log = logging.getLogger("HunyuanVideo")

CATEGORY = "HunyuanVideo/model"
MAX_BLOCKS = 100


class HunyuanVideoBlockSwap:
    DISPLAY_NAME = "HunyuanVideo Block Swap"
    DESCRIPTION = (
        "Fits the DiT to your card: the first blocks wait in RAM and each is copied to the GPU just before it "
        "runs, the next one while the current one computes, so the copies cost little time. Put it between "
        "HunyuanVideo Model Loader and HunyuanVideo Sampler. auto picks the fewest blocks when sampling starts, "
        "from the free VRAM, the model's size and the video size, and logs its plan."
    )
    CATEGORY = CATEGORY
    FUNCTION = "configure"
    RETURN_TYPES = (MODEL,)
    OUTPUT_TOOLTIPS = ("The same model (not a copy), set to swap blocks while sampling; connect it to the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        def count(kind: str, total: int) -> tuple:
            return (
                "INT",
                {
                    "default": 0,
                    "min": 0,
                    "max": MAX_BLOCKS,
                    "tooltip": f"manual mode: how many {kind} blocks (of {total} in the released model), counted from "
                    "the first, wait in RAM. More blocks = less VRAM, more copying. Extra ones are clipped.",
                },
            )

        def flag(text: str, default: bool = False) -> tuple:
            return ("BOOLEAN", {"default": default, "tooltip": text})

        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT, from HunyuanVideo Model Loader."}),
                "mode": (
                    ["auto", "manual"],
                    {
                        "default": "auto",
                        "tooltip": "auto: when sampling starts, swap the fewest blocks that let the video fit in the "
                        "free VRAM (the block counts below are ignored). manual: swap exactly the counts below.",
                    },
                ),
                "double_blocks_to_swap": count("double-stream", 20),
                "single_blocks_to_swap": count("single-stream", 40),
                "offload_txt_in": flag(
                    "Also keep the text input refiner (0.6 GB) in RAM and copy it in for each step, in both modes."
                ),
                "offload_img_in": flag("Also keep the video patch embedding (0.4 MB) in RAM, in both modes."),
                "offload_final_layer": flag("Also keep the final layer (38 MB) in RAM, in both modes."),
                "prefetch": flag(
                    "Copy the next swapped block while the current one computes (recommended). Off: each copy "
                    "finishes before its block starts, as in other block-swap nodes.",
                    default=True,
                ),
            }
        }

    def configure(
        self,
        model: TransformerHandle,
        mode: str,
        double_blocks_to_swap: int,
        single_blocks_to_swap: int,
        offload_txt_in: bool,
        offload_img_in: bool,
        offload_final_layer: bool,
        prefetch: bool,
    ):
        if not isinstance(model, TransformerHandle):
            raise ValueError(
                f"model must be a loaded HunyuanVideo DiT (from HunyuanVideo Model Loader), got {type(model).__name__}."
            )
        if mode not in ("auto", "manual"):
            raise ValueError(f"mode must be 'auto' or 'manual', got {mode!r}.")
        choice = SwapChoice(double_blocks_to_swap, single_blocks_to_swap)
        if mode == "manual":
            choice, notes = clip_choice(choice, model.model.config)
            for note in notes:
                log.warning("HunyuanVideo Block Swap: %s.", note)
        placement = BlockSwap(
            double_blocks=choice.double_blocks,
            single_blocks=choice.single_blocks,
            offload_txt_in=offload_txt_in,
            offload_img_in=offload_img_in,
            offload_final_layer=offload_final_layer,
            prefetch=prefetch,
            auto=mode == "auto",
            free_memory=comfy_env.free_memory,
        )
        # A new handle around the same module: ComfyUI caches the loader's output, which must not change.
        return (dataclasses.replace(model, placement=placement, after_run=comfy_env.track_model),)
