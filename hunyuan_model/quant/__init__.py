"""Weight formats: GGUF dequantization, FP8 conversion, and Linear modules that keep stored weights.

- :func:`dequantize` turns GGUF block bytes into a float tensor, in torch on any device
  (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K).
- :class:`StoredWeight` is a tensor as a file stores it (plain, FP8 + scale, GGUF blocks).
- :func:`keeps_base_precision` is the one rule for which parameters may be quantized.
- :class:`CastLinear`, :class:`ScaledMMLinear`, :class:`GGUFLinear` replace ``nn.Linear`` in
  every model (DiT, LLM); :func:`make_linear` picks one for a :class:`WeightStorage`;
  :func:`swap_linears`, :func:`assign_tensor` and :func:`meta_tensors` fill a model built on ``meta``.
- :class:`StorageChoices`: the storages each model's loader offers (:data:`DIT_STORAGE`,
  :data:`LLM_STORAGE`, :data:`CLIP_STORAGE`, :data:`VAE_STORAGE`), under the names its node shows.
- :mod:`.nf4`: bitsandbytes 4-bit storage, optional (CUDA only).
"""

from .dequant import dequantize
from .fp8 import (
    cast_to_fp8,
    fp8_dequantize,
    looks_prescaled,
    quantize_fp8_scaled,
    require_scaled_mm,
    scaled_mm_unsupported_reason,
)
from .ggml_types import GGMLType, UnsupportedQuantTypeError, ggml_type
from .linear import CastLinear, GGUFLinear, ScaledMMLinear
from .policy import (
    CLIP_STORAGE,
    DIT_STORAGE,
    LLM_STORAGE,
    VAE_STORAGE,
    StorageChoices,
    WeightStorage,
    keeps_base_precision,
    quantizable_linears,
)
from .stored import StoredWeight
from .swap import assign_tensor, make_linear, meta_tensors, swap_linears

__all__ = [
    "CLIP_STORAGE",
    "DIT_STORAGE",
    "LLM_STORAGE",
    "VAE_STORAGE",
    "StorageChoices",
    "CastLinear",
    "GGMLType",
    "GGUFLinear",
    "ScaledMMLinear",
    "StoredWeight",
    "UnsupportedQuantTypeError",
    "WeightStorage",
    "assign_tensor",
    "cast_to_fp8",
    "dequantize",
    "fp8_dequantize",
    "ggml_type",
    "keeps_base_precision",
    "looks_prescaled",
    "make_linear",
    "meta_tensors",
    "quantizable_linears",
    "quantize_fp8_scaled",
    "require_scaled_mm",
    "scaled_mm_unsupported_reason",
    "swap_linears",
]
