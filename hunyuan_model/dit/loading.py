"""Loading a HunyuanVideo DiT from any checkpoint format, recognised by its contents.

Formats (the file's bytes decide, never its name): Tencent's ``mp_rank_00_model_states.pt``
(``{"module": ...}``, ``"ema"`` on request); Tencent's FP8 release ``*_fp8.pt`` with its scale
map ``*_fp8_map.pt``; safetensors with Tencent keys, bare or under ``model.diffusion_model.``,
``diffusion_model.`` or ``model.``, in bf16/fp16/fp32, float8 (kijai's) or ComfyUI's scaled FP8;
diffusers transformers (a folder, sharded or not, or one file), converted to Tencent keys on the
fly; and city96's GGUF files (architecture ``hyvid``), whose weights stay quantized.

:func:`open_transformer` reads only headers: it refuses wrong files (another model, an FP8 file
without its scale map, a key layout that is no DiT) and infers the config. Its
:meth:`TransformerFile.load` builds the DiT on ``meta`` and fills it tensor by tensor
(:func:`~..checkpoint.load_weights`); :func:`load_transformer` does both.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checkpoint import (
    CheckpointError,
    CheckpointReader,
    ConvertedReader,
    TorchReader,
    WrongModelError,
    load_weights,
    needs_scale_map,
    open_checkpoint,
    with_scale_map,
    wrong_model,
)
from ..identify import MODEL_LOADER, ModelKind, identify
from ..latent import LATENT_CHANNELS
from ..quant import DIT_STORAGE, GGMLType, WeightStorage, keeps_base_precision
from ..quant.fp8 import FP8_DTYPES
from ..quant.ggml_types import BLOCK_LAYOUTS, QUANTIZED_NAMES
from .config import DiTConfig
from .diffusers_keys import diffusers_to_tencent, is_diffusers_dit
from .model import HunyuanVideoTransformer, check_dtype
from .weights import fitting_model

log = logging.getLogger("HunyuanVideo")

Progress = Callable[[int, int], None]

_FP8_NAMES = {str(dtype).removeprefix("torch.") for dtype in FP8_DTYPES}


@dataclass(frozen=True)
class TransformerFile:
    """An opened DiT checkpoint whose tensors have not been read: what it is and the DiT it makes."""

    reader: CheckpointReader  # Tencent keys, scales attached
    config: DiTConfig
    # The DiT built on meta when the keys were checked; the first load fills it (no second build).
    skeleton: list[HunyuanVideoTransformer] = field(default_factory=list, repr=False, compare=False)

    @property
    def description(self) -> str:
        """One line for logs and messages: container, file name and what was found in it."""
        return self.reader.describe()

    def weight_bytes(self, storage: WeightStorage | str, base_dtype: torch.dtype = torch.bfloat16) -> int:
        """Bytes the loaded weights take with ``storage`` and ``base_dtype`` (for making room first)."""
        storage = DIT_STORAGE.pick(storage)
        total = 0
        for key, info in self.reader.infos().items():
            numel = math.prod(info.shape)
            stored = info.storage.removesuffix(" scaled")
            if keeps_base_precision(key):
                total += numel * base_dtype.itemsize
            elif stored in QUANTIZED_NAMES:
                layout = BLOCK_LAYOUTS[GGMLType[stored]]
                total += numel // layout.block_size * layout.type_size
            elif stored in _FP8_NAMES or storage is not WeightStorage.AS_STORED:
                total += numel
            else:
                total += numel * base_dtype.itemsize
        return total

    def load(
        self,
        storage: WeightStorage | str = WeightStorage.AS_STORED,
        base_dtype: torch.dtype = torch.bfloat16,
        attention: str = "sdpa",
        device: torch.device | str | None = None,
        progress: Progress | None = None,
    ) -> HunyuanVideoTransformer:
        """Build the DiT on ``meta`` and fill it (see :func:`load_transformer` for the arguments)."""
        storage = DIT_STORAGE.pick(storage)
        check_dtype(base_dtype)
        if self.skeleton:
            model = self.skeleton.pop().to(base_dtype)
            model.attention_backend = attention
        else:
            model = HunyuanVideoTransformer(self.config, dtype=base_dtype, device="meta", attention=attention)
        load_weights(model, self.reader, storage, device, progress)
        log.info("HunyuanVideo DiT loaded from %s, weights %s, %s", self.description, storage.value, base_dtype)
        return model.eval()


def open_transformer(
    path: str | os.PathLike,
    scale_map: str | os.PathLike | None = None,
    load_key: str | None = None,
) -> TransformerFile:
    """Open a DiT checkpoint (file or diffusers folder) without reading its tensors.

    ``scale_map``: the FP8 scale map for Tencent's ``*_fp8.pt``; None looks beside the weights when
    the FP8 weights need one (:func:`~..checkpoint.find_scale_map`). ``load_key`` picks an entry of
    a wrapped ``.pt`` (``"ema"``). Raises :class:`~..checkpoint.CheckpointError` subclasses that
    name the file: another model (:class:`~..checkpoint.WrongModelError`), a missing or foreign
    scale map, a truncated or unsafe file, or keys that fit no DiT (the first unexpected and
    missing ones listed).
    """
    reader = open_checkpoint(path, load_key=load_key)
    if load_key is not None and reader.container != TorchReader.container:
        raise CheckpointError(
            f"load_key '{load_key}' picks an entry of a PyTorch .pt file; {reader.describe()} is not one."
        )
    _refuse_other_models(reader)
    if is_diffusers_dit(reader.keys()):
        reader = _converted(reader)
    if scale_map is not None:
        _require_unscaled_fp8(reader, Path(scale_map))
    if scale_map is not None or needs_scale_map(reader):
        reader = with_scale_map(reader, scale_map)
    try:
        model = fitting_model(reader.infos(), source=reader.describe())
    except CheckpointError:
        raise
    except ValueError as error:
        raise CheckpointError(f"{reader.describe()}: {error}") from None
    _refuse_other_latents(reader, model.config)
    return TransformerFile(reader, model.config, [model])


def load_transformer(
    path: str | os.PathLike,
    scale_map: str | os.PathLike | None = None,
    storage: WeightStorage | str = WeightStorage.AS_STORED,
    base_dtype: torch.dtype = torch.bfloat16,
    attention: str = "sdpa",
    device: torch.device | str | None = None,
    load_key: str | None = None,
    progress: Progress | None = None,
) -> HunyuanVideoTransformer:
    """The HunyuanVideo DiT in the checkpoint at ``path`` (any format; see the module doc).

    ``storage`` says how the block Linear weights are held (:class:`~..quant.WeightStorage`:
    ``as_stored``, ``fp8_e4m3fn``, ``fp8_e4m3fn_scaled``, ``fp8_e4m3fn_fast``); everything else is
    in ``base_dtype`` (bfloat16 or float32; float16 is refused: it gives black frames).
    ``attention`` is the backend name. ``device``: where the weights go as they load (a CUDA
    device never holds the model in RAM); None keeps weights already in their final form as views
    of the memory-mapped file, which then stays open for as long as the model lives.
    ``progress(done, total)`` is called after each tensor and may raise to cancel. For
    ``scale_map`` and ``load_key`` and the errors, see :func:`open_transformer`.
    """
    source = open_transformer(path, scale_map, load_key)
    return source.load(storage, base_dtype, attention, device, progress)


def _refuse_other_models(reader: CheckpointReader) -> None:
    shapes = {key: info.shape for key, info in reader.infos().items()}
    kind = identify(shapes, reader.prefix)
    # Image-to-video DiTs are refused once their config is known, with their channel counts.
    if kind not in (None, ModelKind.HUNYUAN_DIT, ModelKind.HUNYUAN_DIT_I2V):
        raise wrong_model(
            reader.describe(),
            shapes,
            "a HunyuanVideo transformer",
            ModelKind.HUNYUAN_DIT,
            MODEL_LOADER,
            reader.prefix,
            "The model loader takes the transformer (DiT) from models/diffusion_models.",
        )


def _converted(reader: CheckpointReader) -> CheckpointReader:
    try:
        return ConvertedReader(reader, diffusers_to_tencent)
    except ValueError as error:
        raise CheckpointError(
            f"{reader.describe()} has diffusers HunyuanVideo keys but cannot be converted: {error}"
        ) from None


def _require_unscaled_fp8(reader: CheckpointReader, scale_map: Path) -> None:
    found = {info.storage for info in reader.infos().values()}
    if not found & _FP8_NAMES:  # scaled weights show as 'float8_e4m3fn scaled'
        raise CheckpointError(
            f"scale map '{scale_map.name}' was given, but {reader.describe()} holds no FP8 weights that need one "
            f"(its weights are {', '.join(sorted(found))}). A scale map belongs only with Tencent's '*_fp8.pt' "
            "release; leave the scale map on auto for other files."
        )


def _refuse_other_latents(reader: CheckpointReader, config: DiTConfig) -> None:
    if config.in_channels != LATENT_CHANNELS or config.out_channels != LATENT_CHANNELS:
        raise WrongModelError(
            f"{reader.describe()} is a HunyuanVideo-style transformer that takes {config.in_channels} latent channels "
            f"and makes {config.out_channels} (image-to-video variants such as Tencent's I2V or SkyReels take 32 or "
            f"33); this pack makes text-to-video from {LATENT_CHANNELS}-channel latents. Pick the text-to-video "
            "transformer."
        )
