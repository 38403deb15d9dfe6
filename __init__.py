"""HunyuanVideo Desktop: a ComfyUI node pack for Tencent's HunyuanVideo text-to-video model.

ComfyUI imports this folder as a package and reads the two mappings below.
"""

# pytest imports this file as a plain module named "__init__" when the checkout's folder name is
# not a Python name (e.g. ComfyUI-HunyuanVideo-Desktop); there is no package then, and nothing to
# export. The tests import the pack as a package themselves (tests/conftest.py).
if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    __all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
