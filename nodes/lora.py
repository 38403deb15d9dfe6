"""The LoRA node: a loaded DiT in, a DiT with one more LoRA out (chainable), and what was applied as text."""

from __future__ import annotations

import dataclasses
import logging

from ..hunyuan_model.handle import TransformerHandle
from ..hunyuan_model.lora import AppliedLora, ApplyMode, BlockStrengths, apply_loras, linear_shapes, read_lora
from . import comfy_env
from .types import MODEL

log = logging.getLogger("HunyuanVideo")

CATEGORY = "HunyuanVideo/model"
LORA_EXTENSIONS = (".safetensors", ".sft", ".pt", ".pth")


class HunyuanVideoLoRA:
    DISPLAY_NAME = "HunyuanVideo LoRA"
    DESCRIPTION = (
        "Applies a LoRA from models/loras to the HunyuanVideo transformer, whatever trained it: diffusion-pipe and "
        "ComfyUI files, musubi-tuner / kohya (lora_unet_...), diffusers / peft, OneTrainer, Tencent's HunyuanVideo-I2V "
        "trainer, and LyCORIS LoHa / LoKr. Chain several for a stack. Works with bf16, FP8 and GGUF weights and with "
        "block swap. Changing the strength or removing the node never reloads the model. Keys that change nothing "
        "are listed in the report output and the log."
    )
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = (MODEL, "STRING")
    RETURN_NAMES = ("model", "report")
    OUTPUT_TOOLTIPS = (
        "A new model with the LoRA (the input model is unchanged and shares its weights); connect it to the sampler, "
        "block swap, or another LoRA node.",
        "What was applied: the LoRA's format, how many of its keys matched (matched/total), every key that changed "
        "nothing and why, and the whole LoRA stack.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        names = comfy_env.list_models("loras", LORA_EXTENSIONS)
        return {
            "required": {
                "model": (MODEL, {"tooltip": "The HunyuanVideo DiT, from the model loader or another LoRA node."}),
                "lora_name": (
                    names,
                    {"default": names[0] if names else "", "tooltip": "The LoRA file in models/loras."},
                ),
                "strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": -10.0,
                        "max": 10.0,
                        "step": 0.01,
                        "tooltip": "How much of the LoRA to apply: 1 = as trained, 0 = none (the model is then exactly "
                        "the input), negative values push away from it.",
                    },
                ),
            },
            "optional": {
                "block_strengths": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Optional factors per block (20 double + 40 single in the released model), applied on "
                        "top of strength: e.g. 'double_blocks=0.5, single_blocks.30-39=0, other=1'. 'other' is "
                        "everything outside the blocks. Empty = 1 everywhere.",
                    },
                ),
                "apply_mode": (
                    [mode.value for mode in ApplyMode],
                    {
                        "default": ApplyMode.AUTO.value,
                        "tooltip": "How the LoRA reaches bf16/fp32 weights (FP8 and GGUF weights always stay as they "
                        "are, the LoRA added on the fly). merge: into a copy of each changed weight, no cost per step "
                        "but that much more memory (26 GB for a LoRA on every block of the bf16 model). on_the_fly: "
                        "no weight copies, a few percent more time per step. auto: merge when the copies stay under "
                        "10% of the model, else on the fly.",
                    },
                ),
            },
        }

    @classmethod
    def IS_CHANGED(cls, lora_name, **_):
        return comfy_env.model_fingerprint("loras", lora_name)

    def apply(self, model, lora_name, strength, block_strengths="", apply_mode=ApplyMode.AUTO.value):
        if not isinstance(model, TransformerHandle):
            raise ValueError(
                f"model must be a loaded HunyuanVideo DiT (from HunyuanVideo Model Loader), got {type(model).__name__}."
            )
        blocks = BlockStrengths.parse(block_strengths)
        path = comfy_env.resolve_model("loras", lora_name)
        lora = read_lora(path, linear_shapes(model.model))
        summary = lora.summary()
        (log.warning if lora.unmatched else log.info)("HunyuanVideo LoRA %s", summary)
        with comfy_env.Progress(100, "Applying LoRA") as bar:
            styled = apply_loras(
                model.model,
                [AppliedLora(lora, strength, blocks)],
                apply_mode,
                lambda done, total: bar.update(done * 100 // total),
            )
        stack = "; ".join(
            f"{a.lora.name} x{a.strength:g}" + (f" ({a.blocks})" if a.blocks.entries else "") for a in styled.lora_stack
        )
        description = f"{model.description}; LoRA {lora_name} x{strength:g}"
        handle = dataclasses.replace(model, model=styled, description=description, after_run=comfy_env.track_model)
        return (handle, f"{summary}\nLoRA stack: {stack}")
