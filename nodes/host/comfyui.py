"""The ComfyUI host: ``folder_paths`` for model folders and output names, ``comfy.cli_args`` for metadata,
``comfy.model_management`` for devices, memory and cancellation (our models enter its list of loaded
models through :mod:`.comfy_memory`), ``comfy.utils.ProgressBar`` and ``latent_preview`` for progress and
sampler previews."""

from __future__ import annotations

import logging
from pathlib import Path

import comfy.model_management as mm
import comfy.utils
import folder_paths
import torch

from ...hunyuan_model.handle import PlacedModel
from . import Host, ProgressBar, SaveTarget
from .comfy_memory import LoadedModels

log = logging.getLogger("HunyuanVideo")


class ComfyUIHost(Host):
    def __init__(self) -> None:
        self.loaded_models = LoadedModels()

    def model_folders(self, kind: str) -> list[Path]:
        return [Path(p) for p in folder_paths.get_folder_paths(kind)]

    def models_directory(self) -> Path:
        return Path(folder_paths.models_dir)

    def output_directory(self) -> Path:
        return Path(folder_paths.get_output_directory())

    def save_target(self, filename_prefix: str, width: int, height: int) -> SaveTarget:
        folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height
        )
        return SaveTarget(Path(folder), filename, counter, subfolder)

    def metadata_enabled(self) -> bool:
        from comfy.cli_args import args

        return not args.disable_metadata

    def configure(self, models_dir=None, output_dir=None) -> None:
        """ComfyUI has its own folders (its command line and extra_model_paths.yaml): nothing to set."""

    def tokenizer_dir(self, kind: str) -> Path | None:
        """Llama-3's (comfy/text_encoders/llama_tokenizer) or CLIP-L's (comfy/sd1_tokenizer) tokenizer files."""
        comfy_root = Path(mm.__file__).resolve().parent
        return comfy_root / {"llm": "text_encoders/llama_tokenizer", "clip": "sd1_tokenizer"}[kind]

    def compute_device(self) -> torch.device:
        return mm.get_torch_device()

    def offload_device(self) -> torch.device:
        return mm.unet_offload_device()

    def free_memory(self, device: torch.device) -> int:
        """Free memory as ComfyUI counts it, plus what dynamic VRAM (comfy-aimdo, 0.12+) would give back on
        demand from ComfyUI's own models: ``ModelPatcher.get_free_memory`` counts the same
        (0.19.3 comfy/model_patcher.py:308-316)."""
        return int(mm.get_free_memory(device)) + _aimdo_reclaimable()

    def make_room(self, bytes_needed: int, device: torch.device, keep: PlacedModel | None = None) -> None:
        keep_loaded = self.loaded_models.entries_of(keep) if keep is not None else []
        mm.free_memory(bytes_needed, device, keep_loaded=keep_loaded)
        mm.soft_empty_cache()

    def track(self, placed: PlacedModel) -> None:
        self.loaded_models.register(placed)

    def check_cancel(self) -> None:
        mm.throw_exception_if_processing_interrupted()

    def request_cancel(self) -> None:
        mm.interrupt_current_processing(True)

    def progress_bar(self, total: int, description: str) -> ProgressBar:
        return _ComfyBar(total, self.compute_device())


def _aimdo_reclaimable() -> int:
    try:
        import comfy.memory_management as memory_management  # 0.12+
    except ImportError:
        return 0
    if not getattr(memory_management, "aimdo_enabled", False):
        return 0
    import comfy_aimdo.model_vbar

    return int(comfy_aimdo.model_vbar.vbars_analyze())


_NOT_MADE = object()


class _ComfyBar(ProgressBar):
    """ComfyUI's progress bar; a ``[B, 16, T, H, W]`` model-space latent becomes a preview image when the user
    has previews on."""

    def __init__(self, total: int, device: torch.device) -> None:
        self.total, self._device = total, device
        self._bar = comfy.utils.ProgressBar(total)
        # Made at the first preview latent: only the sampler sends them, and ComfyUI's get_previewer loads a
        # TAESD model (or warns that it has none) each time it is asked.
        self._previewer = _NOT_MADE

    def update(self, done: int, preview_latent: torch.Tensor | None) -> None:
        preview = None
        if preview_latent is not None:
            if self._previewer is _NOT_MADE:
                self._previewer = make_previewer(self._device)
            if self._previewer is not None:
                preview = self._previewer.decode_latent_to_preview_image("JPEG", preview_latent)
        self._bar.update_absolute(done, self.total, preview)

    def close(self) -> None:
        """ComfyUI's bar ends with the node."""


def make_previewer(device: torch.device):
    try:
        import comfy.latent_formats
        import latent_preview

        return latent_preview.get_previewer(device, comfy.latent_formats.HunyuanVideo())
    except (ImportError, AttributeError) as error:
        log.info("HunyuanVideo: no sampler previews (%s)", error)
        return None
