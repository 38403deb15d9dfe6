"""The standalone host: tests, the headless runner and scripts, without ComfyUI.

Models come from a directory laid out with ComfyUI's folder names (``configure`` or
``HUNYUANVIDEO_MODELS_DIR``), outputs go to ``HUNYUANVIDEO_OUTPUT_DIR`` (or ``configure``); models run on
CUDA when present, else the CPU; progress is a tqdm bar; cancelling is a flag another thread (a signal
handler) sets.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import torch

from ...hunyuan_model.offload.memory_plan import device_free_bytes
from .. import files
from . import MODEL_FOLDERS, Cancelled, Host, ProgressBar, SaveTarget


class StandaloneHost(Host):
    def __init__(self) -> None:
        self.models_dir = Path(os.environ.get("HUNYUANVIDEO_MODELS_DIR", "models"))
        self.output_dir = Path(os.environ.get("HUNYUANVIDEO_OUTPUT_DIR", "output"))
        self._cancel = threading.Event()

    def configure(self, models_dir=None, output_dir=None) -> None:
        if models_dir is not None:
            self.models_dir = Path(models_dir)
        if output_dir is not None:
            self.output_dir = Path(output_dir)

    def model_folders(self, kind: str) -> list[Path]:
        return [self.models_dir / name for name in MODEL_FOLDERS[kind]]

    def models_directory(self) -> Path:
        return self.models_dir

    def output_directory(self) -> Path:
        return self.output_dir

    def save_target(self, filename_prefix: str, width: int, height: int) -> SaveTarget:
        """ComfyUI's ``folder_paths.get_save_image_path`` rules, so counters continue across both hosts and a
        prefix cannot leave the output folder."""
        output_dir = os.path.abspath(self.output_dir)
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

    def compute_device(self) -> torch.device:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")

    def offload_device(self) -> torch.device:
        return torch.device("cpu")

    def free_memory(self, device: torch.device) -> int:
        return device_free_bytes(device)

    def make_room(self, bytes_needed: int, device: torch.device, keep=None) -> None:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def track(self, placed) -> None:
        """Nothing else shares the device: there is no one to tell."""

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            self._cancel.clear()
            raise Cancelled("cancelled by request")

    def request_cancel(self) -> None:
        self._cancel.set()

    def progress_bar(self, total: int, description: str) -> ProgressBar:
        return _TqdmBar(total, description)


class _TqdmBar(ProgressBar):
    def __init__(self, total: int, description: str) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=description, leave=False)

    def update(self, done: int, preview_latent: torch.Tensor | None) -> None:
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()
