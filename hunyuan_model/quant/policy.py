"""Which weights may be stored quantized, and the weight-storage choices each model's loader offers.

THE RULE (the only place it is written): a parameter is stored quantized (FP8 or GGUF blocks)
only if it is the ``.weight`` of one of the Linear layers inside ``double_blocks`` or
``single_blocks``: per double block ``{img,txt}_mod.linear``, ``{img,txt}_attn_qkv``,
``{img,txt}_attn_proj``, ``{img,txt}_mlp.fc1``, ``{img,txt}_mlp.fc2``; per single block ``linear1``,
``linear2``, ``modulation.linear``. That is Tencent's own FP8 selection (320 layers in the released
model, spec section 2.1). Everything else stays in the base precision: all biases, the RMSNorm
weights (``*_q_norm``, ``*_k_norm``), and the embedders and head (``img_in``, ``txt_in``,
``time_in``, ``vector_in``, ``guidance_in``, ``final_layer``), which are small and whose precision
matters most for quality.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

DOUBLE_BLOCK_LINEARS = tuple(
    f"{stream}_{layer}"
    for stream in ("img", "txt")
    for layer in ("mod.linear", "attn_qkv", "attn_proj", "mlp.fc1", "mlp.fc2")
)
SINGLE_BLOCK_LINEARS = ("linear1", "linear2", "modulation.linear")

_QUANTIZABLE = re.compile(
    rf"(double_blocks\.\d+\.({'|'.join(map(re.escape, DOUBLE_BLOCK_LINEARS))})"
    rf"|single_blocks\.\d+\.({'|'.join(map(re.escape, SINGLE_BLOCK_LINEARS))}))\.weight"
)


def keeps_base_precision(key: str) -> bool:
    """Whether the parameter with Tencent key ``key`` is stored in the base precision (see module doc).

    >>> keeps_base_precision("double_blocks.0.img_attn_qkv.weight")
    False
    >>> keeps_base_precision("double_blocks.0.img_attn_qkv.bias"), keeps_base_precision("txt_in.input_embedder.weight")
    (True, True)
    """
    return _QUANTIZABLE.fullmatch(key) is None


def quantizable_linears(double_blocks: int, single_blocks: int) -> list[str]:
    """Module names of every Linear whose weight may be quantized, for a DiT of the given depths."""
    names = [f"double_blocks.{i}.{layer}" for i in range(double_blocks) for layer in DOUBLE_BLOCK_LINEARS]
    return names + [f"single_blocks.{i}.{layer}" for i in range(single_blocks) for layer in SINGLE_BLOCK_LINEARS]


class WeightStorage(str, Enum):
    """How a model's Linear weights are held in memory; each loader offers a subset (:class:`StorageChoices`).

    ``DEFAULT``: dense in the base precision (FP8 files dequantized with their scales); GGUF
    blocks stay blocks, dequantized per call (the same numbers, a quarter of the memory).
    ``AS_STORED``: as the file holds them; FP8 and GGUF weights stay FP8 / GGUF blocks, float
    weights are cast to the base precision. ``FP8_E4M3FN``: float weights cast to float8_e4m3fn
    (clamped to +-448), upcast per layer. ``FP8_E4M3FN_SCALED``: float8_e4m3fn with a per-tensor
    scale ``max|W| / 448`` computed at load (Tencent's recipe; quality close to bf16).
    ``FP8_E4M3FN_FAST``: scaled float8_e4m3fn multiplied in FP8 by ``torch._scaled_mm``
    (activations scaled per tensor on the fly); needs compute capability 8.9+ on CUDA.
    FP8 weights in the file stay as they are under every FP8 choice (their scales are kept).
    ``NF4``: bitsandbytes 4-bit on CUDA (:mod:`.nf4`), applied after a ``DEFAULT`` load.
    """

    DEFAULT = "default"
    AS_STORED = "as_stored"
    FP8_E4M3FN = "fp8_e4m3fn"
    FP8_E4M3FN_SCALED = "fp8_e4m3fn_scaled"
    FP8_E4M3FN_FAST = "fp8_e4m3fn_fast"
    NF4 = "nf4"


@dataclass(frozen=True)
class StorageChoices:
    """The storages one model's loader offers, under the option names its node shows (saved in workflows)."""

    model: str
    options: Mapping[str, WeightStorage]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.options)

    def pick(self, choice: WeightStorage | str) -> WeightStorage:
        """The storage for ``choice`` (an option name, or a storage this model offers); ValueError otherwise."""
        if isinstance(choice, WeightStorage) and choice in self.options.values():
            return choice
        if isinstance(choice, str) and choice in self.options:
            return self.options[choice]
        raise ValueError(f"unknown {self.model} weight storage {choice!r}; expected one of {self.names}.")


_S = WeightStorage
DIT_STORAGE = StorageChoices(
    "DiT", {s.value: s for s in (_S.AS_STORED, _S.FP8_E4M3FN, _S.FP8_E4M3FN_SCALED, _S.FP8_E4M3FN_FAST)}
)
# The LLM's "fp8_e4m3fn" option has always kept a per-tensor scale: it is the scaled storage.
LLM_STORAGE = StorageChoices("LLM", {"default": _S.DEFAULT, "fp8_e4m3fn": _S.FP8_E4M3FN_SCALED, "nf4": _S.NF4})
CLIP_STORAGE = StorageChoices("CLIP", {"default": _S.DEFAULT})
VAE_STORAGE = StorageChoices("VAE", {"default": _S.DEFAULT})
