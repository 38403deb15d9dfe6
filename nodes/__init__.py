"""ComfyUI nodes: thin adapters from widgets to the ``hunyuan_model`` package.

Each node module lists its classes in ``NODES``; a class's name is its node id.
"""

from . import (
    block_swap,
    compile_blocks,
    guidance,
    latent,
    long_video,
    model_loader,
    sampling,
    step_cache,
    text,
    vae,
    video,
)

_MODULES = (
    latent,
    model_loader,
    block_swap,
    step_cache,
    compile_blocks,
    long_video,
    guidance,
    text,
    sampling,
    vae,
    video,
)

NODE_CLASSES = [cls for module in _MODULES for cls in module.NODES]
NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in NODE_CLASSES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: cls.DISPLAY_NAME for cls in NODE_CLASSES}
