"""Tencent's FP8 scale maps and the weights they belong to.

Tencent's FP8 release is ``<name>_fp8.pt`` (block Linear weights stored as float8_e4m3fn, each
divided by its own scale) plus ``<name>_fp8_map.pt``: ``{module name: scale}``, keys without
``.weight``, one float32 ``[1]`` per layer (320 in the full model). kijai re-exported the map as
``fp8_map.safetensors``. Weights and map only make sense together: FP8 weights loaded without
their scales give noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..identify import MODEL_LOADER, ModelKind
from ..quant import StoredWeight
from ..quant.fp8 import is_fp8, looks_prescaled
from .errors import CheckpointError, MissingScaleMapError, wrong_model
from .open_file import open_checkpoint
from .reader import CheckpointReader, TensorInfo, WrappedReader

MAP_SUFFIXES = (".pt", ".safetensors", ".pth")


def scale_map_candidates(weights_path: str | Path) -> list[Path]:
    """Where a scale map for ``weights_path`` may lie, in search order.

    ``x_fp8.pt`` -> ``x_fp8_map.pt`` (Tencent's rule) and the other suffixes; ``x.safetensors`` ->
    ``x_map.*`` and ``x_fp8_map.*``; then ``fp8_map.*`` in the same folder (kijai's name).
    """
    weights_path = Path(weights_path)
    stems = (
        [weights_path.stem] if weights_path.stem.endswith("_fp8") else [weights_path.stem, f"{weights_path.stem}_fp8"]
    )
    names = [f"{stem}_map{suffix}" for stem in stems for suffix in MAP_SUFFIXES]
    names += [f"fp8_map{suffix}" for suffix in MAP_SUFFIXES]
    return [weights_path.with_name(name) for name in names]


def find_scale_map(weights_path: str | Path, explicit: str | Path | None = None) -> Path:
    """The scale map for ``weights_path``: ``explicit`` if given, else the first existing candidate.

    Raises :class:`MissingScaleMapError` listing every path searched.
    """
    candidates = [Path(explicit)] if explicit is not None else scale_map_candidates(weights_path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    listed = "\n  ".join(str(path) for path in candidates)
    raise MissingScaleMapError(
        f"'{Path(weights_path).name}' holds FP8 weights that were divided by per-layer scales, but no scale map "
        f"was found. Loading them without it gives noise, so this is refused. Searched:\n  {listed}\n"
        "Put Tencent's matching '*_fp8_map.pt' beside the weights or choose it as the scale map.",
        candidates,
    )


def load_scale_map(path: str | Path) -> dict[str, torch.Tensor]:
    """``{module name: float32 scalar}`` from a ``.pt`` (weights only) or ``.safetensors`` scale map."""
    path = Path(path)
    reader = open_checkpoint(path, prefixes=(), architecture=None)
    scales = {}
    for key, info in reader.infos().items():
        if len(info.shape) > 1 or (info.shape and info.shape[0] != 1):
            shapes = {key: info.shape for key, info in reader.infos().items()}
            raise wrong_model(
                reader.describe(),
                shapes,
                "an FP8 scale map",
                ModelKind.FP8_SCALE_MAP,
                MODEL_LOADER,
                hint=f"'{key}' holds a tensor of shape {list(info.shape)}, where a scale map has one number per layer.",
            )
        scale = reader.load(key).data.float().reshape(())
        if not torch.isfinite(scale) or scale <= 0:
            raise CheckpointError(f"'{path.name}': the scale of '{key}' is {scale.item()}, not a positive number.")
        scales[key.removesuffix(".weight")] = scale
    if not scales:
        raise CheckpointError(f"'{path.name}' is not an FP8 scale map: it holds no tensors.")
    return scales


class ScaleMappedReader(WrappedReader):
    """``reader``'s tensors with Tencent's per-layer scales attached to the FP8 weights.

    Every FP8 weight must have a scale and every scale an FP8 weight; a mismatch means the map
    belongs to another file and is refused, listing examples.
    """

    def __init__(self, reader: CheckpointReader, scales: Mapping[str, torch.Tensor], map_path: str | Path) -> None:
        super().__init__(reader, f"scale map '{Path(map_path).name}'")
        fp8_layers = {
            key.removesuffix(".weight")
            for key, info in reader.infos().items()
            if key.endswith(".weight") and info.storage.startswith("float8")
        }
        unscaled, orphans = sorted(fp8_layers - set(scales)), sorted(set(scales) - fp8_layers)
        if unscaled or orphans:
            raise CheckpointError(
                f"scale map '{Path(map_path).name}' does not belong to '{reader.path.name}': "
                + "; ".join(
                    part
                    for part in (
                        f"{len(unscaled)} FP8 layers have no scale (e.g. {unscaled[:3]})" if unscaled else "",
                        f"{len(orphans)} scales have no FP8 layer (e.g. {orphans[:3]})" if orphans else "",
                    )
                    if part
                )
                + "."
            )
        self._scales = {f"{layer}.weight": scale for layer, scale in scales.items()}
        self._infos = {
            key: TensorInfo(info.shape, f"{info.storage} scaled") if key in self._scales else info
            for key, info in reader.infos().items()
        }

    def load(self, key: str) -> StoredWeight:
        stored = self._reader.load(key)
        if key not in self._scales:
            return stored
        if not is_fp8(stored.data.dtype) or stored.scale is not None:
            raise CheckpointError(
                f"'{key}' in {self._reader.describe()} is {stored.storage_name}; a scale map applies to FP8."
            )
        return StoredWeight(stored.data, stored.shape, scale=self._scales[key])

    def release(self, key: str) -> None:
        self._reader.release(key)


def needs_scale_map(reader: CheckpointReader) -> bool:
    """Whether ``reader`` holds FP8 weights without scales whose values show they were divided by one.

    Decided from contents (never the file name): the first unscaled FP8 ``.weight`` is checked
    with :func:`~..quant.looks_prescaled`. Plain-cast FP8 files (kijai's) answer False.
    """
    for key, info in reader.infos().items():
        if key.endswith(".weight") and info.storage in ("float8_e4m3fn", "float8_e5m2"):
            stored = reader.load(key)
            prescaled = looks_prescaled(stored.data)
            reader.release(key)
            return prescaled
    return False


def with_scale_map(reader: CheckpointReader, explicit: str | Path | None = None) -> ScaleMappedReader:
    """``reader`` with its scale map attached: ``explicit``, or found beside the file (:func:`find_scale_map`)."""
    map_path = find_scale_map(reader.path, explicit)
    return ScaleMappedReader(reader, load_scale_map(map_path), map_path)
