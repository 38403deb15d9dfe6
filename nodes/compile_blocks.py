"""The compile node: a loaded DiT in, the same DiT set to run torch.compile'd blocks out."""

from __future__ import annotations

import dataclasses

from ..hunyuan_model.compile_blocks import MODES, BlockCompile
from ..hunyuan_model.handle import TransformerHandle
from .types import MODEL

CATEGORY = "HunyuanVideo/model"


class HunyuanVideoCompile:
    DISPLAY_NAME = "HunyuanVideo Compile"
    DESCRIPTION = (
        "Runs each DiT block through torch.compile: the first step takes longer (compiling), later steps are "
        "faster. Blocks are compiled one by one, so a new video size recompiles two small graphs, not the whole "
        "model; works with block swap, FP8 and GGUF weights. Needs a working compiler (Triton on NVIDIA); where "
        "there is none it logs one warning and runs uncompiled."
    )
    CATEGORY = CATEGORY
    FUNCTION = "configure"
    RETURN_TYPES = (MODEL,)
    OUTPUT_TOOLTIPS = ("The same model (not a copy), set to run compiled blocks; connect it to the sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT, from HunyuanVideo Model Loader or Block Swap."}),
                "mode": (
                    list(MODES),
                    {
                        "default": "default",
                        "tooltip": "torch.compile's mode. max-autotune-no-cudagraphs tries more kernels: a much "
                        "longer first step for a few percent more speed. (CUDA graphs are not offered: block swap "
                        "moves weights between steps.)",
                    },
                ),
                "dynamic": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Compile for any video size: no recompiling when the size changes, slightly "
                        "slower steps. Off compiles for each size used.",
                    },
                ),
            }
        }

    def configure(self, model: TransformerHandle, mode: str, dynamic: bool):
        if not isinstance(model, TransformerHandle):
            raise ValueError(
                f"model must be a loaded HunyuanVideo DiT (from HunyuanVideo Model Loader), got {type(model).__name__}."
            )
        return (dataclasses.replace(model, compile=BlockCompile(mode=mode, dynamic=dynamic)),)
