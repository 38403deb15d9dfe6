"""The pack's only contact with ComfyUI, with a standalone fallback for tests and headless runs.

Inside ComfyUI this module asks ``folder_paths`` for model folders and output file names,
``comfy.cli_args`` whether to write metadata, ``comfy.model_management`` for devices, memory and
cancellation (and registers the DiT's resident weights there, :func:`track_model`),
``comfy.utils.ProgressBar`` for progress and ``latent_preview`` for sampler previews. Without
ComfyUI it uses a models directory laid out with ComfyUI's folder names (from :func:`configure` or ``HUNYUANVIDEO_MODELS_DIR``), CUDA if present else the CPU, tqdm
progress bars and a process-wide cancel flag.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import NamedTuple

import torch

from ..hunyuan_model.handle import module_bytes, resident_bytes, same_device
from ..hunyuan_model.offload.memory_plan import device_free_bytes
from . import files

log = logging.getLogger("HunyuanVideo")

try:
    import comfy.model_management as _mm
    import comfy.utils as _comfy_utils
    import folder_paths as _folder_paths

    IN_COMFYUI = True
except ImportError:
    IN_COMFYUI = False

# ComfyUI's folder kinds and the directories each one spans (ComfyUI's folder_paths does the same).
MODEL_FOLDERS: dict[str, tuple[str, ...]] = {
    "diffusion_models": ("diffusion_models", "unet"),
    "text_encoders": ("text_encoders", "clip"),
    "vae": ("vae",),
    "loras": ("loras",),
    "clip_vision": ("clip_vision",),
}

_standalone = {
    "models_dir": os.environ.get("HUNYUANVIDEO_MODELS_DIR", "models"),
    "output_dir": os.environ.get("HUNYUANVIDEO_OUTPUT_DIR", "output"),
}


class Cancelled(RuntimeError):
    """Raised at the next progress update after :func:`request_cancel` (standalone runs only)."""


def configure(models_dir: str | os.PathLike | None = None, output_dir: str | os.PathLike | None = None) -> None:
    """Set the standalone models and output directories (ignored inside ComfyUI, which has its own)."""
    if models_dir is not None:
        _standalone["models_dir"] = os.fspath(models_dir)
    if output_dir is not None:
        _standalone["output_dir"] = os.fspath(output_dir)


# ---------------------------------------------------------------------------------------------
# Model files


def model_folders(kind: str) -> list[Path]:
    """The directories that hold models of ``kind`` (one of :data:`MODEL_FOLDERS`)."""
    if kind not in MODEL_FOLDERS:
        raise ValueError(f"unknown model folder kind {kind!r}; expected one of {sorted(MODEL_FOLDERS)}.")
    if IN_COMFYUI:
        return [Path(p) for p in _folder_paths.get_folder_paths(kind)]
    root = Path(_standalone["models_dir"])
    return [root / name for name in MODEL_FOLDERS[kind]]


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
    if IN_COMFYUI:
        return Path(_folder_paths.models_dir)
    return Path(_standalone["models_dir"])


def output_directory() -> Path:
    """Where saved files go: ComfyUI's output folder, or the standalone output directory."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_output_directory())
    return Path(_standalone["output_dir"])


class SaveTarget(NamedTuple):
    """Where the next output of a save node goes, named the way ComfyUI's save nodes name files."""

    folder: Path  # absolute, inside the output directory, created
    filename: str  # the prefix's last part, after %width%/%date% substitution
    counter: int  # one past the highest counter already used with this prefix
    subfolder: str  # the folder relative to the output directory, for the UI

    def file_name(self, extension: str) -> str:
        return f"{self.filename}_{self.counter:05}_.{extension}"


def save_target(filename_prefix: str, width: int, height: int) -> SaveTarget:
    """Resolve a save node's ``filename_prefix`` (which may hold subfolders) in the output directory.

    Inside ComfyUI this is ``folder_paths.get_save_image_path``; the standalone version follows
    the same rules, so counters continue across both and a prefix cannot leave the output folder.
    """
    if IN_COMFYUI:
        folder, filename, counter, subfolder, _ = _folder_paths.get_save_image_path(
            filename_prefix, _folder_paths.get_output_directory(), width, height
        )
        return SaveTarget(Path(folder), filename, counter, subfolder)
    output_dir = os.path.abspath(_standalone["output_dir"])
    prefix = os.path.normpath(files.expand_prefix(filename_prefix, width, height))
    subfolder, filename = os.path.dirname(prefix), os.path.basename(prefix)
    folder = os.path.abspath(os.path.join(output_dir, subfolder))
    if os.path.commonpath((output_dir, folder)) != output_dir:
        raise PermissionError(
            f"filename_prefix {filename_prefix!r} points outside the output folder {output_dir}; "
            f"use a plain name or a subfolder such as 'video/HunyuanVideo'."
        )
    os.makedirs(folder, exist_ok=True)
    return SaveTarget(Path(folder), filename, files.next_counter(folder, filename), subfolder)


def metadata_enabled() -> bool:
    """False when ComfyUI runs with ``--disable-metadata`` (then saved files carry no workflow)."""
    if IN_COMFYUI:
        from comfy.cli_args import args

        return not args.disable_metadata
    return True


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
    (``kind="llm"``, comfy/text_encoders/llama_tokenizer) or CLIP-L's (``"clip"``, comfy/sd1_tokenizer).
    None outside ComfyUI."""
    if not IN_COMFYUI:
        return None
    comfy_root = Path(_mm.__file__).resolve().parent
    return comfy_root / {"llm": "text_encoders/llama_tokenizer", "clip": "sd1_tokenizer"}[kind]


# ---------------------------------------------------------------------------------------------
# Devices and memory


def compute_device() -> torch.device:
    """The device models run on."""
    if IN_COMFYUI:
        return _mm.get_torch_device()
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def offload_device() -> torch.device:
    """Where models wait while not in use."""
    if IN_COMFYUI:
        return _mm.unet_offload_device()
    return torch.device("cpu")


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now (for CUDA, including what torch has cached but not used)."""
    if IN_COMFYUI:
        return int(_mm.get_free_memory(device))
    return device_free_bytes(device)


def make_room(bytes_needed: int, device: torch.device) -> None:
    """Ask the host to unload what it can so that ``bytes_needed`` fit on ``device``."""
    if IN_COMFYUI:
        _mm.free_memory(bytes_needed, device)
        _mm.soft_empty_cache()
        return
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def track_model(handle) -> None:
    """Hand the DiT weights a run left on the compute device to ComfyUI's memory management.

    ``handle`` is a :class:`~..hunyuan_model.handle.TransformerHandle` (set this as its ``after_run``).
    Inside ComfyUI its model is entered (once) in ComfyUI's list of loaded models through
    :class:`_ResidentModel`, so that when another model needs the memory ComfyUI moves our weights to
    the offload device, as it does with its own models. Standalone runs have no one to tell.
    """
    if not IN_COMFYUI or same_device(handle.compute_device, handle.offload_device):
        return
    if resident_bytes(handle.model, handle.compute_device) == 0:
        return
    resident = _resident.get(handle.model)
    if resident is None:
        resident = _resident[handle.model] = _ResidentModel(handle.model, handle.compute_device, handle.offload_device)
    if any(loaded.model is resident for loaded in _mm.current_loaded_models):
        return
    try:
        loaded = _mm.LoadedModel(resident)
        loaded.real_model = weakref.ref(handle.model)
        loaded.model_finalizer = weakref.finalize(handle.model, _mm.cleanup_models)
        loaded.currently_used = False
    except (AttributeError, TypeError) as error:
        log.warning("HunyuanVideo: could not register the model with ComfyUI's memory management (%s)", error)
        return
    _mm.current_loaded_models.insert(0, loaded)


class _ResidentModel:
    """The part of a ComfyUI ModelPatcher that its model list uses, for our DiT.

    ComfyUI calls :meth:`partially_unload` / :meth:`detach` to free memory: both move every weight on
    the compute device to the offload device (the next run's placement brings back what it needs).
    Loading stays with our placements, so :meth:`partially_load` moves nothing. Only weak references
    to the model are kept: ComfyUI's list never keeps it alive.
    """

    parent = None

    def __init__(self, model: torch.nn.Module, load_device: torch.device, offload_device: torch.device) -> None:
        self._model = weakref.ref(model)
        self.load_device, self.offload_device = load_device, offload_device

    @property
    def model(self) -> torch.nn.Module | None:
        return self._model()

    def model_size(self) -> int:
        model = self.model
        return 0 if model is None else module_bytes(model)

    def loaded_size(self) -> int:
        model = self.model
        return 0 if model is None else resident_bytes(model, self.load_device)

    def current_loaded_device(self) -> torch.device:
        return self.load_device if self.loaded_size() else self.offload_device

    def partially_unload(self, device_to: torch.device, memory_to_free: int = 0) -> int:
        freed = self.loaded_size()
        model = self.model
        if model is not None and freed:
            model.to(self.offload_device)
        return freed

    def detach(self, unpatch_all: bool = True) -> None:
        self.partially_unload(self.offload_device)

    def partially_load(self, device_to: torch.device, extra_memory: int = 0, force_patch_weights: bool = False) -> int:
        return 0

    def model_patches_to(self, device) -> None:
        pass

    def model_patches_models(self) -> list:
        return []

    def model_dtype(self) -> torch.dtype | None:
        model = self.model
        return None if model is None else getattr(model, "compute_dtype", None)

    def lowvram_patch_counter(self) -> int:
        return 0

    def is_clone(self, other) -> bool:
        return other is self


_resident: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------------------------
# Progress, cancel and previews

_cancel = threading.Event()
_NOT_MADE = object()


def request_cancel() -> None:
    """Standalone runs: make the next progress update raise :class:`Cancelled`."""
    _cancel.set()


def check_cancel() -> None:
    """Raise if the user cancelled: ComfyUI's interrupt inside ComfyUI, :class:`Cancelled` outside."""
    if IN_COMFYUI:
        _mm.throw_exception_if_processing_interrupted()
    elif _cancel.is_set():
        _cancel.clear()
        raise Cancelled("cancelled by request")


class Progress:
    """A progress bar over ``total`` units that checks for cancel on every update.

    ``update(done, preview_latent)`` takes the absolute count done; a ``[B, 16, T, H, W]``
    model-space latent (raw VAE latent times the scaling factor) becomes a preview image in
    ComfyUI when the user has previews on.
    """

    def __init__(self, total: int, description: str = "HunyuanVideo") -> None:
        self.total = total
        check_cancel()
        # Made at the first preview latent: only the sampler sends them, and ComfyUI's get_previewer
        # loads a TAESD model (or warns that it has none) each time it is asked.
        self._previewer = _NOT_MADE
        if IN_COMFYUI:
            self._bar = _comfy_utils.ProgressBar(total)
        else:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, leave=False)

    def update(self, done: int, preview_latent: torch.Tensor | None = None) -> None:
        check_cancel()
        if IN_COMFYUI:
            preview = None
            if preview_latent is not None:
                if self._previewer is _NOT_MADE:
                    self._previewer = _make_previewer()
                if self._previewer is not None:
                    preview = self._previewer.decode_latent_to_preview_image("JPEG", preview_latent)
            self._bar.update_absolute(done, self.total, preview)
        else:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if not IN_COMFYUI:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _make_previewer():
    try:
        import comfy.latent_formats
        import latent_preview

        return latent_preview.get_previewer(compute_device(), comfy.latent_formats.HunyuanVideo())
    except (ImportError, AttributeError) as error:
        log.info("HunyuanVideo: no sampler previews (%s)", error)
        return None
