"""The program the nodes run in: ComfyUI (:mod:`.comfyui`) or the standalone runner (:mod:`.standalone`).

:class:`Host` is what nodes need from either one: model and output folders, devices and memory,
progress, cancellation. :func:`host` gives the current one: ComfyUI's when ComfyUI is importable,
otherwise the standalone host. This package is the only code that imports ComfyUI.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import NamedTuple

import torch

from ...hunyuan_model.handle import PlacedModel

# ComfyUI's folder kinds and the directories each one spans (ComfyUI's folder_paths does the same).
MODEL_FOLDERS: dict[str, tuple[str, ...]] = {
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "vae": ("vae",),
    "loras": ("loras",),
    "clip_vision": ("clip_vision",),
}


class Cancelled(RuntimeError):
    """Raised at the next progress update after :meth:`Host.request_cancel` (standalone runs)."""


class SaveTarget(NamedTuple):
    """Where the next output of a save node goes, named the way ComfyUI's save nodes name files."""

    folder: Path  # absolute, inside the output directory, created
    filename: str  # the prefix's last part, after %width%/%date% substitution
    counter: int  # one past the highest counter already used with this prefix
    subfolder: str  # the folder relative to the output directory, for the UI

    def file_name(self, extension: str) -> str:
        return f"{self.filename}_{self.counter:05}_.{extension}"


class ProgressBar(abc.ABC):
    """A host's progress display; ``update`` takes the absolute count done and an optional preview latent."""

    @abc.abstractmethod
    def update(self, done: int, preview_latent: torch.Tensor | None) -> None: ...

    @abc.abstractmethod
    def close(self) -> None:
        """Take the bar off the screen."""


class Host(abc.ABC):
    """What the nodes ask of the program they run in."""

    # Model and output files

    @abc.abstractmethod
    def model_folders(self, kind: str) -> list[Path]:
        """The directories that hold models of ``kind`` (a key of :data:`MODEL_FOLDERS`)."""

    @abc.abstractmethod
    def models_directory(self) -> Path:
        """The root of the model folders."""

    @abc.abstractmethod
    def output_directory(self) -> Path:
        """Where saved files go."""

    @abc.abstractmethod
    def save_target(self, filename_prefix: str, width: int, height: int) -> SaveTarget:
        """Resolve a save node's prefix (which may hold subfolders) in the output directory."""

    def metadata_enabled(self) -> bool:
        """False when saved files must not carry the workflow (ComfyUI's ``--disable-metadata``)."""
        return True

    def tokenizer_dir(self, kind: str) -> Path | None:
        """Tokenizer files the host ships for single-file text encoders (``"llm"`` or ``"clip"``), if any."""
        return None

    @abc.abstractmethod
    def configure(self, models_dir: str | os.PathLike | None, output_dir: str | os.PathLike | None) -> None:
        """Set the models and output directories, where the host lets the caller choose them."""

    # Devices and memory

    @abc.abstractmethod
    def compute_device(self) -> torch.device:
        """The device models run on."""

    @abc.abstractmethod
    def offload_device(self) -> torch.device:
        """Where models wait while not in use."""

    @abc.abstractmethod
    def free_memory(self, device: torch.device) -> int:
        """Bytes a run can have on ``device`` now."""

    @abc.abstractmethod
    def make_room(self, bytes_needed: int, device: torch.device, keep: PlacedModel | None = None) -> None:
        """Unload what the host can so that ``bytes_needed`` fit on ``device``; ``keep``'s weights stay (the
        model about to run: ``bytes_needed`` counts only what it still needs)."""

    @abc.abstractmethod
    def track(self, placed: PlacedModel) -> None:
        """Set as a :class:`PlacedModel`'s ``after_run``: take the weights a run left on the compute device
        into the host's memory management."""

    # Progress and cancellation

    @abc.abstractmethod
    def check_cancel(self) -> None:
        """Raise if the user cancelled."""

    @abc.abstractmethod
    def request_cancel(self) -> None:
        """Make the next :meth:`check_cancel` raise."""

    @abc.abstractmethod
    def progress_bar(self, total: int, description: str) -> ProgressBar:
        """A progress display over ``total`` units."""


_current: Host | None = None


def host() -> Host:
    """The host the pack runs in (made on first use)."""
    global _current
    if _current is None:
        _current = _detect()
    return _current


def _detect() -> Host:
    try:
        import comfy.model_management  # noqa: F401
        import folder_paths  # noqa: F401
    except ImportError:  # not inside ComfyUI
        from .standalone import StandaloneHost

        return StandaloneHost()
    from .comfyui import ComfyUIHost

    return ComfyUIHost()
