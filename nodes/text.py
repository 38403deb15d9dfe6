"""Text nodes: load the two text encoders, encode prompts, save and load the result, and take
ComfyUI's own HunyuanVideo conditioning instead."""

from __future__ import annotations

import logging

import torch

from ..hunyuan_model.conditioning import TextEmbeds
from ..hunyuan_model.handle import PlacedModel, ReloadEachRun, WholeModel
from ..hunyuan_model.text_encoder import LLM_WEIGHTS, TEMPLATES, VIDEO, HunyuanTextEncoder, load_text_encoder
from ..hunyuan_model.text_encoder.embeds_io import load_embeds, save_embeds
from ..hunyuan_model.text_encoder.native import embeds_from_conditioning
from ..hunyuan_model.text_encoder.templates import PromptTemplate, template_named
from . import comfy_env, output_files
from .inputs import cfg_scale_input
from .types import EMBEDS, TEXT_ENCODER
from .widget_checks import join_problems, validate

log = logging.getLogger("HunyuanVideo")

CATEGORY = "HunyuanVideo/text"
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
MODEL_EXTENSIONS = (".safetensors", ".sft", ".gguf")


class TextEncoderOutOfMemoryError(torch.cuda.OutOfMemoryError):
    """The text encoders did not fit, with what to change; still PyTorch's out-of-memory error, so ComfyUI
    handles it as one (it unloads its models after an OOM)."""


def text_encoder_handle(encoder: HunyuanTextEncoder, device: str, after_encoding: str) -> PlacedModel:
    """What travels on a TEXT_ENCODER socket: the encoder placed on the host, running on ``device`` ("gpu":
    the host's compute device, or "cpu"), offloaded or dropped after each prompt (``after_encoding``)."""
    compute = comfy_env.compute_device() if device == "gpu" else torch.device("cpu")
    placement = ReloadEachRun() if after_encoding == "free" else WholeModel()
    return comfy_env.place(encoder, compute, placement)


def _text_encoder_names() -> list[str]:
    return comfy_env.list_models("text_encoders", MODEL_EXTENSIONS, include_dirs=True)


def _pick(names: list[str], *hints: str) -> str:
    for hint in hints:
        for name in names:
            if hint in name.lower():
                return name
    return names[0] if names else ""


def _check_nf4_device(llm_weights: str, device: str) -> None:
    if llm_weights == "nf4" and device == "cpu":
        raise ValueError(
            "llm_weights nf4 runs on an NVIDIA GPU only: set device to gpu, or choose fp8_e4m3fn for the CPU."
        )


def _check_custom_template(template: str, custom_template: str) -> None:
    if template == "custom":
        PromptTemplate("custom", custom_template)


class HunyuanVideoTextEncoderLoader:
    DISPLAY_NAME = "HunyuanVideo Text Encoder Loader"
    DESCRIPTION = (
        "Loads HunyuanVideo's two text encoders: LLaVA-Llama-3-8B (ComfyUI's llava_llama3_fp16 or "
        "llava_llama3_fp8_scaled file, or a transformers folder) and CLIP-L (clip_l.safetensors or a folder), "
        "from models/text_encoders. They wait in RAM and visit the GPU only while encoding."
    )
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (TEXT_ENCODER,)
    OUTPUT_TOOLTIPS = ("Both text encoders with their tokenizers, for HunyuanVideo Text Encode.",)

    @classmethod
    def INPUT_TYPES(cls):
        names = _text_encoder_names()
        return {
            "required": {
                "llm": (
                    names,
                    {
                        "default": _pick(names, "llava_llama3_fp8", "llava"),
                        "tooltip": "The LLaVA-Llama-3-8B text encoder: llava_llama3_fp16.safetensors (16 GB), "
                        "llava_llama3_fp8_scaled.safetensors (9 GB) or a llava-llama-3-8b transformers folder.",
                    },
                ),
                "clip": (
                    names,
                    {
                        "default": _pick(names, "clip_l"),
                        "tooltip": "CLIP-L: clip_l.safetensors or an openai/clip-vit-large-patch14 folder.",
                    },
                ),
                "precision": (
                    list(PRECISIONS),
                    {"default": "fp16", "tooltip": "Compute and storage precision; fp16 is what Tencent uses."},
                ),
                "llm_weights": (
                    list(LLM_WEIGHTS),
                    {
                        "default": "default",
                        "tooltip": "How the LLM's weights are stored: default = in the chosen precision (16 GB); "
                        "fp8_e4m3fn = 8 GB, nearly the same result; nf4 = about 5 GB, needs bitsandbytes and "
                        "an NVIDIA GPU.",
                    },
                ),
                "device": (
                    ["gpu", "cpu"],
                    {
                        "default": "gpu",
                        "tooltip": "Where to encode: gpu moves the encoders to the GPU only while encoding; cpu "
                        "needs no VRAM but takes a minute or more per prompt.",
                    },
                ),
                "after_encoding": (
                    ["offload", "free"],
                    {
                        "default": "offload",
                        "tooltip": "offload = keep the encoders in RAM for the next prompt; free = drop them "
                        "(saves 9-16 GB of RAM; the next prompt reads them from disk again).",
                    },
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, llm_weights, device):
        return validate(cls.INPUT_TYPES(), {"llm_weights": llm_weights, "device": device}, _check_nf4_device)

    @classmethod
    def IS_CHANGED(cls, llm, clip, **_):
        return comfy_env.model_fingerprint("text_encoders", llm, clip)

    def load(self, llm, clip, precision, llm_weights, device, after_encoding):
        llm_path = comfy_env.resolve_model("text_encoders", llm)
        clip_path = comfy_env.resolve_model("text_encoders", clip)
        shipped = {kind: comfy_env.comfy_tokenizer_dir(kind) for kind in ("llm", "clip")}
        encoder = load_text_encoder(
            llm_path,
            clip_path,
            dtype=PRECISIONS[precision],
            llm_weights=llm_weights,
            llm_tokenizer_dirs=[d for d in (shipped["llm"],) if d is not None],
            clip_tokenizer_dirs=[d for d in (shipped["clip"],) if d is not None],
            nf4_device=comfy_env.compute_device(),
        )
        return (text_encoder_handle(encoder, device, after_encoding),)


class HunyuanVideoTextEncode:
    DISPLAY_NAME = "HunyuanVideo Text Encode"
    DESCRIPTION = (
        "Encodes a prompt for HunyuanVideo: LLaVA-Llama-3 reads it inside a description template (its "
        "third-to-last layer's states, cut to the prompt, up to 256 tokens) and CLIP-L gives a pooled vector. "
        "A negative prompt is encoded only for true CFG (cfg_scale above 1)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = (EMBEDS,)
    OUTPUT_TOOLTIPS = ("The encoded prompt (and negative prompt) for the HunyuanVideo sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text_encoder": (TEXT_ENCODER, {"tooltip": "From HunyuanVideo Text Encoder Loader."}),
                "prompt": (
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "default": "",
                        "tooltip": "What the video shows. Detailed descriptions of subject, motion, scene, "
                        "light and camera work best; up to 256 LLM tokens are read.",
                    },
                ),
                "negative_prompt": (
                    "STRING",
                    {
                        "multiline": True,
                        "dynamicPrompts": True,
                        "default": "",
                        "tooltip": "What to avoid; used only when cfg_scale is above 1 (the released model "
                        "is guidance-distilled and needs none).",
                    },
                ),
                "template": (
                    [*TEMPLATES, "custom"],
                    {
                        "default": "video",
                        "tooltip": "The instruction the LLM reads the prompt in: video (default), image (for "
                        "single frames; keeps up to 315 prompt tokens, as Tencent's code does) or custom.",
                    },
                ),
                "custom_template": (
                    "STRING",
                    {
                        "multiline": True,
                        "default": VIDEO.text,
                        "tooltip": "Used when template is custom: Llama-3 chat text with one {} where the "
                        "prompt goes. The part up to the user turn is cut from the result.",
                    },
                ),
                "cfg_scale": cfg_scale_input(
                    "True classifier-free guidance: 1.0 = off (one forward per step); above 1 "
                    "the sampler also runs the negative prompt, which doubles the time per step."
                ),
                "hidden_state_skip_layer": (
                    "INT",
                    {
                        "default": 2,
                        "min": 0,
                        "max": 31,
                        "tooltip": "Which LLM layer's states to use, counted from the last: 2 = the third-to-last "
                        "state, as the model was trained.",
                    },
                ),
                "apply_final_norm": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Apply the LLM's final RMSNorm to those states (off in training)."},
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, template, custom_template):
        values = {"template": template, "custom_template": custom_template}
        return validate(cls.INPUT_TYPES(), values, _check_custom_template)

    def encode(
        self,
        text_encoder: PlacedModel,
        prompt,
        negative_prompt,
        template,
        custom_template,
        cfg_scale,
        hidden_state_skip_layer,
        apply_final_norm,
    ):
        options = {
            "template": template_named(template, custom_template),
            "hidden_state_skip_layer": hidden_state_skip_layer,
            "apply_final_norm": apply_final_norm,
        }
        return (encode_with_handle(text_encoder, prompt, negative_prompt, cfg_scale, **options),)


def encode_with_handle(handle: PlacedModel, prompt: str, negative_prompt: str, cfg_scale: float, **options):
    """Encode on the handle's device; its placement offloads or drops the encoder before anything else runs."""
    encoder = handle.model
    comfy_env.check_cancel()
    encoder.load()  # the size to make room for is known once the weights are read
    device = handle.compute_device
    if device.type != "cpu":
        comfy_env.make_room(handle.device_bytes(), device, keep=handle)
    try:
        with handle.running(offload_after=True):
            return encoder.encode_prompt(prompt, negative_prompt, cfg_scale=cfg_scale, **options)
    except torch.cuda.OutOfMemoryError as error:
        raise TextEncoderOutOfMemoryError(
            f"the text encoders ({encoder.memory_bytes() / 2**30:.1f} GiB) do not fit in the free memory of {device}. "
            "In HunyuanVideo Text Encoder Loader set llm_weights to fp8_e4m3fn (half the size) or device to cpu."
        ) from error


class HunyuanVideoTextEmbedsSave:
    DISPLAY_NAME = "HunyuanVideo Save Text Embeds"
    DESCRIPTION = (
        "Saves encoded prompts to a .safetensors file in ComfyUI's output folder, so the next run can load "
        "them with HunyuanVideo Load Text Embeds instead of loading the 16 GB text encoder again."
    )
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = (EMBEDS,)
    OUTPUT_TOOLTIPS = ("The same embeds, passed through.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "embeds": (EMBEDS, {"tooltip": "Encoded prompts from HunyuanVideo Text Encode."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "hunyuanvideo/embeds",
                        "tooltip": "File name start inside the output folder; a number is added "
                        "(hunyuanvideo/embeds_00001_.safetensors).",
                    },
                ),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix):
        return join_problems(output_files.output_problems(filename_prefix, comfy_env.output_directory()))

    def save(self, embeds: TextEmbeds, filename_prefix):
        output_files.warn_about_prefix(filename_prefix)
        target = comfy_env.save_target(filename_prefix, 0, 0)
        with output_files.claimed_file(target.folder, target.filename, target.counter, "safetensors") as claim:
            name, temporary = claim
            save_embeds(embeds, temporary)
        log.info("HunyuanVideo: text embeds saved to %s", target.folder / name)
        return (embeds,)


class HunyuanVideoTextEmbedsLoad:
    DISPLAY_NAME = "HunyuanVideo Load Text Embeds"
    DESCRIPTION = "Loads prompts saved by HunyuanVideo Save Text Embeds from ComfyUI's output folder."
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (EMBEDS,)
    OUTPUT_TOOLTIPS = ("The saved embeds, as HunyuanVideo Text Encode gave them.",)

    @classmethod
    def INPUT_TYPES(cls):
        names = comfy_env.list_output_files((".safetensors",))
        return {
            "required": {
                "embeds_file": (
                    names,
                    {
                        "default": _pick(names, "embeds"),
                        "tooltip": "A .safetensors file written by HunyuanVideo Save Text Embeds (in the output "
                        "folder; refresh after saving).",
                    },
                )
            }
        }

    @classmethod
    def IS_CHANGED(cls, embeds_file, **_):
        return comfy_env.output_file_fingerprint(embeds_file)

    def load(self, embeds_file):
        return (load_embeds(comfy_env.resolve_output_file(embeds_file)),)


class HunyuanVideoConditioningToEmbeds:
    DISPLAY_NAME = "HunyuanVideo Conditioning To Embeds"
    DESCRIPTION = (
        "Uses ComfyUI's own text encoders: takes CONDITIONING from DualCLIPLoader (type hunyuan_video: "
        "clip_l + llava_llama3) and CLIPTextEncode and makes embeds for the HunyuanVideo sampler."
    )
    CATEGORY = CATEGORY
    FUNCTION = "convert"
    RETURN_TYPES = (EMBEDS,)
    OUTPUT_TOOLTIPS = ("The prompt (and negative prompt) as embeds for the HunyuanVideo sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "positive": ("CONDITIONING", {"tooltip": "The prompt, from CLIPTextEncode with a hunyuan_video CLIP."}),
                "cfg_scale": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 1.0,
                        "max": 30.0,
                        "step": 0.1,
                        "tooltip": "True classifier-free guidance: 1.0 = off; above 1 needs the negative input.",
                    },
                ),
            },
            "optional": {
                "negative": ("CONDITIONING", {"tooltip": "The negative prompt, used when cfg_scale is above 1."}),
            },
        }

    def convert(self, positive, cfg_scale, negative=None):
        if cfg_scale > 1.0 and negative is None:
            raise ValueError(
                f"cfg_scale is {cfg_scale} but no negative conditioning is connected: connect a CLIPTextEncode "
                "(an empty one works) to negative, or set cfg_scale to 1.0."
            )
        embeds = TextEmbeds(
            positive=embeds_from_conditioning(positive, name="positive conditioning"),
            negative=None if negative is None else embeds_from_conditioning(negative, name="negative conditioning"),
            cfg_scale=cfg_scale,
        )
        return (embeds,)
