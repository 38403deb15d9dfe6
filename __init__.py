"""HunyuanVideo Desktop: a ComfyUI node pack for Tencent's HunyuanVideo text-to-video model.

ComfyUI imports this folder as a package and reads the two mappings below.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
