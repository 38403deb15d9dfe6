"""Prompt templates for the LLM and the crop that removes them again.

The LLM reads the prompt inside a Llama-3 chat template whose system turn asks for a detailed
description; only the states of the user turn (the prompt and its closing ``<|eot_id|>``) reach
the DiT. Where the user turn starts is found in the token ids, so custom templates crop right too.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PROMPT_TOKENS = 256  # Tencent's text_len: LLM states per prompt after the crop
CLIP_TOKENS = 77

_SYSTEM = "<|start_header_id|>system<|end_header_id|>\n\n"
_USER = "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"


@dataclass(frozen=True)
class PromptTemplate:
    """A template with one ``{}`` where the prompt goes."""

    name: str
    text: str

    def __post_init__(self) -> None:
        count = self.text.count("{}")
        if count != 1:
            raise ValueError(
                f"prompt template {self.name!r} must contain exactly one {{}} where the prompt goes; found {count}. "
                f"Template: {self.text[:120]!r}"
            )

    @property
    def prefix(self) -> str:
        return self.text.split("{}")[0]

    def format(self, prompt: str) -> str:
        before, after = self.text.split("{}")
        return before + prompt + after


# Tencent's dit-llm-encode-video (HV constants.py); "video." and similar have no space after them.
VIDEO = PromptTemplate(
    "video",
    _SYSTEM + "Describe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:" + _USER,
)
# Tencent's dit-llm-encode, used for single images (video_length 1).
IMAGE = PromptTemplate(
    "image",
    _SYSTEM + "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial "
    "relationships of the objects and background:" + _USER,
)
TEMPLATES = {template.name: template for template in (VIDEO, IMAGE)}

# --- image-to-video (HunyuanVideo-I2V): the image's tokens replace <image>; the crop is in .image_prompt ---
_ASSISTANT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
# Tencent-Hunyuan/HunyuanVideo-I2V hyvideo/constants.py PROMPT_TEMPLATE_ENCODE_VIDEO_I2V (crop_start 103).
VIDEO_I2V = PromptTemplate(
    "video_i2v",
    _SYSTEM + "<image>\nDescribe the video by detailing the following aspects according to the reference image: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>" + _ASSISTANT,
)
# Tencent's image-mode I2V template is unused: its text encoder refuses image mode with an image
# (hyvideo/text_encoder/__init__.py:393-443 handles "video" only).


def template_named(name: str, custom_text: str = "") -> PromptTemplate:
    """``video``, ``image`` or ``custom`` (then ``custom_text`` is the template)."""
    if name == "custom":
        return PromptTemplate("custom", custom_text)
    if name not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; expected one of {[*TEMPLATES, 'custom']}.")
    return TEMPLATES[name]


def crop_start(tokenizer, template: PromptTemplate) -> int:
    """How many leading tokens (BOS included) the template puts before the prompt.

    Found by locating ``<|start_header_id|>user<|end_header_id|>`` (and the ``\\n\\n`` after it) in
    the ids of the template's text before ``{}``; a template without a user turn is cut after its
    whole prefix. With Llama-3's tokenizer this gives Tencent's 95 (video) and 36 (image).
    """
    ids = tokenizer(template.prefix).input_ids
    header = tokenizer("<|start_header_id|>user<|end_header_id|>", add_special_tokens=False).input_ids
    newlines = tokenizer("\n\n", add_special_tokens=False).input_ids
    for start in range(len(ids) - len(header), -1, -1):
        if ids[start : start + len(header)] == header:
            end = start + len(header)
            if ids[end : end + len(newlines)] == newlines:
                end += len(newlines)
            return end
    return len(ids)


def sequence_length(tokenizer, template: PromptTemplate, max_prompt_tokens: int = MAX_PROMPT_TOKENS) -> int:
    """Tokens the LLM reads, padded: the prompt budget plus a template prefix.

    For the released templates that prefix is the video template's, as in Tencent's reference
    (max_length 256 + 95 = 351 even in image mode), so an image prompt keeps 351 - 36 = 315 states,
    not 256. A custom template adds its own prefix and keeps ``max_prompt_tokens`` states.
    """
    reference = VIDEO if template in TEMPLATES.values() else template
    return max_prompt_tokens + crop_start(tokenizer, reference)
