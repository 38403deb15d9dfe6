"""The model loader node: a HunyuanVideo transformer from any checkpoint format, as a MODEL handle."""

from __future__ import annotations

import torch

from ..hunyuan_model.attention import ATTENTION_BACKENDS
from ..hunyuan_model.dit import open_transformer
from ..hunyuan_model.handle import TransformerHandle
from ..hunyuan_model.quant import DIT_STORAGE, WeightStorage, require_scaled_mm
from . import comfy_env
from .types import MODEL

CATEGORY = "HunyuanVideo/model"
MODEL_EXTENSIONS = (".safetensors", ".sft", ".pt", ".pth", ".gguf")
SCALE_MAP_EXTENSIONS = (".pt", ".pth", ".safetensors")
AUTO = "auto"
# fp16 is not offered: the DiT's activations overflow it (NaN, black frames).
PRECISIONS = {"bf16": torch.bfloat16, "fp32": torch.float32}
LOAD_DEVICES = ("offload_device", "main_device")


def _model_names() -> list[str]:
    return comfy_env.list_models("diffusion_models", MODEL_EXTENSIONS, include_dirs=True)


def _default(names: list[str]) -> str:
    """The first name that looks like a HunyuanVideo transformer (a guess for the widget only)."""
    for name in names:
        if ("hunyuan" in name.lower() or "mp_rank" in name) and "map" not in name.lower():
            return name
    return names[0] if names else ""


class HunyuanVideoModelLoader:
    DISPLAY_NAME = "HunyuanVideo Model Loader"
    DESCRIPTION = (
        "Loads the HunyuanVideo transformer (DiT) from models/diffusion_models or models/unet, whatever the file: "
        "Tencent's mp_rank_00_model_states.pt or its FP8 release with the scale map, bf16 or FP8 safetensors "
        "(kijai's, Comfy-Org's, scaled FP8), a diffusers folder, or a city96 GGUF. The format is read from the file; "
        "a VAE, text encoder or LoRA picked by mistake is named as such."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL,)
    OUTPUT_TOOLTIPS = ("The loaded transformer, for the HunyuanVideo sampler (and block swap).",)

    @classmethod
    def INPUT_TYPES(cls):
        names = _model_names()
        files = comfy_env.list_models("diffusion_models", SCALE_MAP_EXTENSIONS)
        maps = [name for name in files if "map" in name.rsplit("/", 1)[-1].lower()]  # Tencent's and kijai's names
        return {
            "required": {
                "model_name": (
                    names,
                    {
                        "default": _default(names),
                        "tooltip": "The transformer file (.safetensors, .pt, .gguf) or diffusers folder in "
                        "models/diffusion_models or models/unet.",
                    },
                ),
                "weight_storage": (
                    list(DIT_STORAGE.names),
                    {
                        "default": WeightStorage.AS_STORED.value,
                        "tooltip": "How the block weights are held: as_stored = as the file has them (bf16: 26 GB, "
                        "FP8 and GGUF files stay small). fp8_e4m3fn = cast to FP8 (13 GB, some quality loss). "
                        "fp8_e4m3fn_scaled = FP8 with a scale per layer (13 GB, close to bf16). fp8_e4m3fn_fast = "
                        "scaled FP8 multiplied in FP8, fastest, needs an RTX 40xx / Ada / Hopper GPU. GGUF files "
                        "take as_stored only.",
                    },
                ),
                "base_precision": (
                    list(PRECISIONS),
                    {
                        "default": "bf16",
                        "tooltip": "Precision of the computation and of the weights kept unquantized (norms, "
                        "biases, embedders, final layer). bf16 as Tencent runs it; fp32 for GPUs without bf16 "
                        "(twice the memory). fp16 is not offered: it gives black frames.",
                    },
                ),
                "attention": (
                    list(ATTENTION_BACKENDS),
                    {
                        "default": "sdpa",
                        "tooltip": "Attention kernel: sdpa (PyTorch's, always available), flash_attn or "
                        "sageattention (faster; need their package installed), auto = the fastest installed one.",
                    },
                ),
                "load_device": (
                    list(LOAD_DEVICES),
                    {
                        "default": "offload_device",
                        "tooltip": "offload_device: the weights wait in RAM (memory-mapped from the file) and go to "
                        "the GPU when sampling starts. main_device: straight to the GPU now (other models are "
                        "unloaded to make room).",
                    },
                ),
            },
            "optional": {
                "scale_map": (
                    [AUTO, *maps],
                    {
                        "default": AUTO,
                        "tooltip": "Only for Tencent's FP8 release (*_fp8.pt): its scale map *_fp8_map.pt (files "
                        "with 'map' in their name are listed). auto finds it beside the weights (also kijai's "
                        "fp8_map.safetensors); FP8 weights without their map are refused, because they would "
                        "give noise.",
                    },
                ),
            },
        }

    @classmethod
    def IS_CHANGED(cls, model_name, scale_map=AUTO, **_):
        maps = () if scale_map in (AUTO, None, "") else (scale_map,)
        return comfy_env.model_fingerprint("diffusion_models", model_name, *maps)

    def load(self, model_name, weight_storage, base_precision, attention, load_device, scale_map=AUTO):
        path = comfy_env.resolve_model("diffusion_models", model_name)
        explicit_map = None if scale_map in (AUTO, None, "") else comfy_env.resolve_model("diffusion_models", scale_map)
        storage, base_dtype = DIT_STORAGE.pick(weight_storage), PRECISIONS[base_precision]
        compute, offload = comfy_env.compute_device(), comfy_env.offload_device()
        if storage is WeightStorage.FP8_E4M3FN_FAST:
            require_scaled_mm(compute)  # checked where it will run, before reading anything
        source = open_transformer(path, explicit_map)
        device = compute if load_device == "main_device" else None
        if device is not None:
            comfy_env.make_room(source.weight_bytes(storage, base_dtype), device)
        with comfy_env.Progress(len(source.reader), "Loading HunyuanVideo") as bar:
            model = source.load(storage, base_dtype, attention, device, lambda done, total: bar.update(done))
        description = f"{source.description}, weights {storage.value}, {base_precision}"
        handle = TransformerHandle(model, compute, offload, description=description, after_run=comfy_env.track_model)
        return (handle,)


NODES = [HunyuanVideoModelLoader]
