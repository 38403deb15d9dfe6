"""Tiny random-weight stand-ins for every model file the shared workflows name, for CPU demos.

Without the real weights (tens of GB), :func:`write_demo_models` fills a models folder with files
of the same names, each in the format its name implies (Comfy-Org's bf16 safetensors, kijai's
plain-cast FP8, city96's GGUF, ComfyUI's single-file text encoders, the VAE), holding a few MB of
random weights. Every node then runs its real code path on them, on the CPU, in seconds; the
video they make is noise. The text encoders get byte-level stand-in tokenizers beside them
(:func:`..hunyuan_model.tiny.text_encoder_files.write_byte_tokenizer`), so that no test-only package is needed.

:func:`demo_plan` tells the headless runner when to use them: when none of the model files a
workflow names exist, and all of them are files this module can write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..hunyuan_model.tiny import dit_files as dit_tiny
from ..hunyuan_model.tiny import text_encoder_files as text_tiny
from ..hunyuan_model.tiny import vae_files
from . import comfy_env
from .workflow_format import is_link

log = logging.getLogger("HunyuanVideo")

# (node type, input) -> model folder kind, for every input of the pack that names a model file.
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("HunyuanVideoModelLoader", "model_name"): "diffusion_models",
    ("HunyuanVideoTextEncoderLoader", "llm"): "text_encoders",
    ("HunyuanVideoTextEncoderLoader", "clip"): "text_encoders",
    ("HunyuanVideoVAELoader", "vae_name"): "vae",
}
# The video size and step count a demo runs at: a 2-core CPU does it in seconds.
DEMO_SIZE = {"width": 256, "height": 144, "frames": 25}
DEMO_STEPS = 4


@dataclass
class _Weights:
    """The random models, made once per call of :func:`write_demo_models` and shared by its files."""

    seed: int
    _dit: dict | None = None
    _llm: torch.nn.Module | None = None

    def dit(self) -> dict[str, torch.Tensor]:
        if self._dit is None:
            self._dit = dit_tiny.release_state_dict(dit_tiny.random_transformer(seed=self.seed))
        return self._dit

    def llm(self) -> torch.nn.Module:
        if self._llm is None:
            self._llm = text_tiny.random_llm(seed=self.seed + 1)
        return self._llm


def _llm_writer(layout: str) -> Callable[[_Weights, Path], None]:
    def write(weights: _Weights, path: Path) -> None:
        text_tiny.write_llm(weights.llm(), path, layout)
        text_tiny.write_byte_tokenizer(path.parent / "llava_llama3_tokenizer", "llm")

    return write


def _write_clip(weights: _Weights, path: Path) -> None:
    text_tiny.write_clip(text_tiny.random_clip(seed=weights.seed + 2), path, "comfy_file")
    text_tiny.write_byte_tokenizer(path.parent / "clip_l_tokenizer", "clip")


def _write_vae(weights: _Weights, path: Path) -> None:
    vae_files.write_vae(vae_files.random_vae(seed=weights.seed + 3), path)


# (folder kind, file name) -> writer, in the format the name stands for.
DEMO_FILES: dict[tuple[str, str], Callable[[_Weights, Path], None]] = {
    ("diffusion_models", "hunyuan_video_t2v_720p_bf16.safetensors"): lambda w, p: dit_tiny.write_safetensors(
        w.dit(), p
    ),
    ("diffusion_models", "hunyuan_video_720_cfgdistill_fp8_e4m3fn.safetensors"): lambda w, p: dit_tiny.write_fp8_cast(
        w.dit(), p
    ),
    ("diffusion_models", "hunyuan-video-t2v-720p-Q4_0.gguf"): lambda w, p: dit_tiny.write_gguf(w.dit(), p, "Q4_0"),
    ("text_encoders", "llava_llama3_fp16.safetensors"): _llm_writer("comfy_file"),
    ("text_encoders", "llava_llama3_fp8_scaled.safetensors"): _llm_writer("comfy_fp8_scaled_file"),
    ("text_encoders", "clip_l.safetensors"): _write_clip,
    ("vae", "hunyuan_video_vae_bf16.safetensors"): _write_vae,
}


def write_demo_models(root: str | Path, files: list[tuple[str, str]] | None = None, seed: int = 0) -> Path:
    """Write ``files`` (default: all of :data:`DEMO_FILES`) under ``root/<kind>/<name>``; returns ``root``."""
    root = Path(root)
    weights = _Weights(seed)
    for kind, name in files or list(DEMO_FILES):
        if (kind, name) not in DEMO_FILES:
            raise ValueError(f"no tiny stand-in for {kind}/{name}; the demo has {sorted(n for _, n in DEMO_FILES)}.")
        DEMO_FILES[kind, name](weights, root / kind / name)
    return root


def model_files(api: dict[str, dict]) -> list[tuple[str, str]]:
    """The ``(folder kind, name)`` of every model file an API graph names, in node order, once each."""
    found = []
    for node in api.values():
        for name, value in node.get("inputs", {}).items():
            kind = MODEL_INPUTS.get((node["class_type"], name))
            if kind and isinstance(value, str) and not is_link(value):
                found.append((kind, value))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class DemoPlan:
    """What a demo run changes: the model files to write and the inputs to shrink (``NODE.INPUT=VALUE``)."""

    files: list[tuple[str, str]]
    overrides: list[str]


def demo_plan(api: dict[str, dict]) -> DemoPlan | None:
    """A demo plan when none of the graph's model files exist and every one has a tiny stand-in, else None."""
    files = model_files(api)
    if not files or any(file not in DEMO_FILES for file in files) or any(_exists(*file) for file in files):
        return None
    return DemoPlan(files, shrink_overrides(api))


def shrink_overrides(api: dict[str, dict], size: dict[str, int] = DEMO_SIZE, steps: int = DEMO_STEPS) -> list[str]:
    """``NODE.INPUT=VALUE`` settings that give every empty latent ``size`` (width, height, frames) and every
    sampler ``steps``."""
    overrides = []
    for node_id, node in api.items():
        if node["class_type"] == "HunyuanVideoEmptyLatent":
            overrides += [f"{node_id}.{name}={value}" for name, value in size.items()]
        elif node["class_type"] == "HunyuanVideoSampler":
            overrides.append(f"{node_id}.steps={steps}")
    return overrides


def _exists(kind: str, name: str) -> bool:
    try:
        comfy_env.resolve_model(kind, name)
    except (FileNotFoundError, PermissionError, ValueError):
        return False
    return True
