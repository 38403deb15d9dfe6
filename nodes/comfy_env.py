"""What nodes ask of the program they run in, as plain functions over the current host.

The host (:mod:`.host`: ComfyUI, or the standalone runner with its models and output directories set by
:func:`configure` or ``HUNYUANVIDEO_MODELS_DIR`` / ``HUNYUANVIDEO_OUTPUT_DIR``) answers; what is the
same for both (model names resolved only inside the model folders, fingerprints, progress that checks
for cancel, placing a model on the host's devices) is here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..hunyuan_model.handle import PlacedModel, Placement, WholeModel
from . import files
from .host import MODEL_FOLDERS, Cancelled, SaveTarget, host

log = logging.getLogger("HunyuanVideo")

__all__ = ["MODEL_FOLDERS", "Cancelled", "SaveTarget", "host"]


def configure(models_dir: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None) -> None:
    """Set the standalone models and output directories (ignored inside ComfyUI, which has its own)."""
    host().configure(models_dir, output_dir)


# ---------------------------------------------------------------------------------------------
# Model and output files


def model_folders(kind: str) -> list[Path]:
    """The directories that hold models of ``kind`` (one of :data:`MODEL_FOLDERS`)."""
    if kind not in MODEL_FOLDERS:
        raise ValueError(f"unknown model folder kind {kind!r}; expected one of {sorted(MODEL_FOLDERS)}.")
    return host().model_folders(kind)


def list_models(kind: str, extensions: tuple[str, ...], include_dirs: bool = False) -> list[str]:
    """Names (relative, '/'-separated) of model files of ``kind`` ending in one of ``extensions``.

    With ``include_dirs``, folders holding a ``config.json`` (transformers or diffusers layouts)
    are listed too, and not searched further.
    """
    return files.folder_listing(tuple(model_folders(kind)), tuple(e.lower() for e in extensions), include_dirs)


def resolve_model(kind: str, name: str) -> Path:
    """Full path of model ``name`` of ``kind``; refuses any name that leaves the model folders.

    Workflows are shared files, so a model name from one must not reach arbitrary paths: absolute
    names, ``..`` parts and symlinks that lead out of the folders are refused. A folder of the kind
    may itself be a link (or be added through ComfyUI's extra_model_paths.yaml): what lies inside it
    is inside.
    """
    files.check_relative_name(name)
    folders = model_folders(kind)
    for base in folders:
        candidate = base / name
        if not candidate.exists():
            continue
        real = candidate.resolve()
        if not real.is_relative_to(base.resolve()):
            raise PermissionError(
                f"model {name!r} in {base} is a link to {real}, outside the {kind} folders, and names from "
                f"workflows may not leave them. Move the file into {base}, or add its folder to ComfyUI's "
                f"extra_model_paths.yaml (headless: --models-dir) instead of linking single files."
            )
        return candidate
    searched = ", ".join(str(f) for f in folders) or "(no folders configured)"
    raise FileNotFoundError(
        f"model {name!r} was not found in the {kind} folders: {searched}. "
        f"Put the file there (or fix the name in the workflow) and refresh the node list."
    )


def model_fingerprint(kind: str, *names: str) -> str:
    """For a loader's ``IS_CHANGED``: size and modification time of the chosen model files (every file of
    a chosen folder). It changes when a file is replaced on disk under the same name, so ComfyUI's cache
    does not keep serving the old model. A name that does not resolve stands for itself (the run reports it)."""
    parts = []
    for name in names:
        try:
            parts.append(files.fingerprint(resolve_model(kind, name)))
        except (OSError, ValueError):
            parts.append(str(name))
    return "|".join(parts)


def models_directory() -> Path:
    """The root of the model folders: ComfyUI's models folder, or the standalone models directory."""
    return host().models_directory()


def output_directory() -> Path:
    """Where saved files go: ComfyUI's output folder, or the standalone output directory."""
    return host().output_directory()


def save_target(filename_prefix: str, width: int, height: int) -> SaveTarget:
    """Resolve a save node's ``filename_prefix`` (which may hold subfolders) in the output directory
    (inside ComfyUI ``folder_paths.get_save_image_path``; standalone by the same rules)."""
    return host().save_target(filename_prefix, width, height)


def metadata_enabled() -> bool:
    """False when ComfyUI runs with ``--disable-metadata`` (then saved files carry no workflow)."""
    return host().metadata_enabled()


def list_output_files(extensions: tuple[str, ...]) -> list[str]:
    """Names (relative, '/'-separated) of files in the output folder ending in one of ``extensions``."""
    return files.folder_listing((output_directory(),), tuple(e.lower() for e in extensions), False)


def output_file_fingerprint(name: str) -> str:
    """:func:`model_fingerprint` for a file in the output folder."""
    try:
        return files.fingerprint(resolve_output_file(name))
    except (OSError, ValueError):
        return name


def resolve_output_file(name: str) -> Path:
    """Full path of file ``name`` in the output folder; refuses names that leave it (as :func:`resolve_model`)."""
    files.check_relative_name(name)
    base = output_directory()
    candidate = base / name
    if not candidate.is_file():
        raise FileNotFoundError(f"{name!r} was not found in the output folder {base}.")
    return candidate


def comfy_tokenizer_dir(kind: str) -> Path | None:
    """The tokenizer files ComfyUI ships, for text encoders given as single files: Llama-3's
    (``kind="llm"``) or CLIP-L's (``"clip"``). None outside ComfyUI."""
    return host().tokenizer_dir(kind)


# ---------------------------------------------------------------------------------------------
# Devices, memory and placement


def compute_device() -> torch.device:
    """The device models run on."""
    return host().compute_device()


def offload_device() -> torch.device:
    """Where models wait while not in use."""
    return host().offload_device()


def free_memory(device: torch.device) -> int:
    """Bytes a run can have on ``device`` now (for CUDA, including what torch has cached but not used, and
    inside ComfyUI what its dynamic VRAM gives back on demand)."""
    return host().free_memory(device)


def make_room(bytes_needed: int, device: torch.device, keep: PlacedModel | None = None) -> None:
    """Ask the host to unload what it can so that ``bytes_needed`` fit on ``device`` (``keep``'s weights stay)."""
    host().make_room(bytes_needed, device, keep)


def track_model(placed: PlacedModel) -> None:
    """A :class:`PlacedModel`'s ``after_run``: hand the weights a run left on the compute device to the
    host's memory management (ComfyUI moves them off when another model needs the memory)."""
    host().track(placed)


def place(model, compute: torch.device | None = None, placement: Placement | None = None, **fields) -> PlacedModel:
    """``model`` placed on this host: ``compute`` (default the host's compute device), the host's offload
    device, ``placement`` (default :class:`WholeModel`), and the host told after every run."""
    return PlacedModel(
        model,
        compute if compute is not None else compute_device(),
        offload_device(),
        placement if placement is not None else WholeModel(),
        after_run=track_model,
        **fields,
    )


# ---------------------------------------------------------------------------------------------
# Progress and cancel


def request_cancel() -> None:
    """Make the next progress update (or :func:`check_cancel`) raise."""
    host().request_cancel()


def check_cancel() -> None:
    """Raise if the user cancelled: ComfyUI's interrupt inside ComfyUI, :class:`Cancelled` outside."""
    host().check_cancel()


class Progress:
    """A progress bar over ``total`` units that checks for cancel on every update.

    ``update(done, preview_latent)`` takes the absolute count done; a ``[B, 16, T, H, W]``
    model-space latent (raw VAE latent times the scaling factor) becomes a preview image in
    ComfyUI when the user has previews on.
    """

    def __init__(self, total: int, description: str = "HunyuanVideo") -> None:
        self.total = total
        check_cancel()
        self._bar = host().progress_bar(total, description)

    def update(self, done: int, preview_latent: torch.Tensor | None = None) -> None:
        check_cancel()
        self._bar.update(done, preview_latent)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
