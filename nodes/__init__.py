"""ComfyUI nodes: thin adapters from widgets to the ``hunyuan_model`` package.

A node's id is what saved workflows store as its type, so the ids live in one explicit table,
:data:`NODE_CLASS_MAPPINGS`, and never follow a class name: renaming a class keeps every saved
workflow working, and an id, once shipped, stays (tests/test_package.py pins them).
"""

from .block_swap import HunyuanVideoBlockSwap
from .compile_blocks import HunyuanVideoCompile
from .guidance import HunyuanVideoEnhanceAVideo, HunyuanVideoSkipLayerGuidance
from .image_to_video import HunyuanVideoImageToVideo
from .latent import HunyuanVideoEmptyLatent
from .long_video import HunyuanVideoExtend, HunyuanVideoLongVideo
from .lora import HunyuanVideoLoRA
from .model_loader import HunyuanVideoModelLoader
from .sampling import HunyuanVideoSampler
from .step_cache import HunyuanVideoStepCache
from .text import (
    HunyuanVideoConditioningToEmbeds,
    HunyuanVideoTextEmbedsLoad,
    HunyuanVideoTextEmbedsSave,
    HunyuanVideoTextEncode,
    HunyuanVideoTextEncoderLoader,
)
from .text_image import HunyuanVideoTextImageEncode
from .vae import HunyuanVideoVAEDecode, HunyuanVideoVAEEncode, HunyuanVideoVAELoader
from .video import HunyuanVideoSaveVideo

# node id -> class, in the order the node reference lists them
NODE_CLASS_MAPPINGS: dict[str, type] = {
    "HunyuanVideoEmptyLatent": HunyuanVideoEmptyLatent,
    "HunyuanVideoImageToVideo": HunyuanVideoImageToVideo,
    "HunyuanVideoModelLoader": HunyuanVideoModelLoader,
    "HunyuanVideoLoRA": HunyuanVideoLoRA,
    "HunyuanVideoBlockSwap": HunyuanVideoBlockSwap,
    "HunyuanVideoStepCache": HunyuanVideoStepCache,
    "HunyuanVideoCompile": HunyuanVideoCompile,
    "HunyuanVideoLongVideo": HunyuanVideoLongVideo,
    "HunyuanVideoEnhanceAVideo": HunyuanVideoEnhanceAVideo,
    "HunyuanVideoSkipLayerGuidance": HunyuanVideoSkipLayerGuidance,
    "HunyuanVideoTextEncoderLoader": HunyuanVideoTextEncoderLoader,
    "HunyuanVideoTextEncode": HunyuanVideoTextEncode,
    "HunyuanVideoTextImageEncode": HunyuanVideoTextImageEncode,
    "HunyuanVideoTextEmbedsSave": HunyuanVideoTextEmbedsSave,
    "HunyuanVideoTextEmbedsLoad": HunyuanVideoTextEmbedsLoad,
    "HunyuanVideoConditioningToEmbeds": HunyuanVideoConditioningToEmbeds,
    "HunyuanVideoSampler": HunyuanVideoSampler,
    "HunyuanVideoVAELoader": HunyuanVideoVAELoader,
    "HunyuanVideoVAEDecode": HunyuanVideoVAEDecode,
    "HunyuanVideoVAEEncode": HunyuanVideoVAEEncode,
    "HunyuanVideoExtend": HunyuanVideoExtend,
    "HunyuanVideoSaveVideo": HunyuanVideoSaveVideo,
}
NODE_CLASSES = list(NODE_CLASS_MAPPINGS.values())
NODE_DISPLAY_NAME_MAPPINGS = {node_id: cls.DISPLAY_NAME for node_id, cls in NODE_CLASS_MAPPINGS.items()}
