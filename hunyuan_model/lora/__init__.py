"""LoRAs for the HunyuanVideo DiT: every published key convention, stacked, on every weight storage.

- :func:`read_lora` reads a file (any convention, :mod:`.formats`) for a model's Linear shapes
  (:func:`linear_shapes`) and accounts for every key; :func:`parse_lora` does it for tensors in memory.
- :func:`apply_loras` returns a new model sharing the base weights with LoRAs merged or applied on
  the fly (:mod:`.apply` states the numerical rule per storage); :func:`remove_loras` gives the base back.
- :class:`BlockStrengths` parses per-block factors (``"double_blocks.0-9=0.5, single_blocks=0"``).

    lora = read_lora("style.safetensors", linear_shapes(model))
    styled = apply_loras(model, [AppliedLora(lora, strength=0.8)])
"""

from .apply import AppliedLora, ApplyMode, LoraDelta, apply_loras, remove_loras, share_tree
from .formats import LoraFile, LoraTerm, parse_lora, read_lora
from .names import linear_shapes
from .strengths import BlockStrengths

__all__ = [
    "AppliedLora",
    "ApplyMode",
    "BlockStrengths",
    "LoraDelta",
    "LoraFile",
    "LoraTerm",
    "apply_loras",
    "linear_shapes",
    "parse_lora",
    "read_lora",
    "remove_loras",
    "share_tree",
]
