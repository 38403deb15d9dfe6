"""HunyuanVideo's text encoders: LLaVA-Llama-3-8B (third-to-last hidden states of a templated
prompt) and CLIP-L (pooled output), loaded from the layouts users have, with transformers'
public classes only."""

from .config import CLIP_DIM, LLM_DIM, ClipConfig, LlmConfig
from .encoder import HunyuanTextEncoder, load_text_encoder
from .loading import LLM_WEIGHTS, load_clip, load_llm
from .templates import IMAGE, MAX_PROMPT_TOKENS, TEMPLATES, VIDEO, PromptTemplate, crop_start, template_named

__all__ = [
    "CLIP_DIM",
    "IMAGE",
    "LLM_DIM",
    "LLM_WEIGHTS",
    "MAX_PROMPT_TOKENS",
    "TEMPLATES",
    "VIDEO",
    "ClipConfig",
    "HunyuanTextEncoder",
    "LlmConfig",
    "PromptTemplate",
    "crop_start",
    "load_clip",
    "load_llm",
    "load_text_encoder",
    "template_named",
]
