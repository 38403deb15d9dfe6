"""What a headless run says before it starts: the device and precisions it will use, and a warning when
real-size weights are about to run on the CPU (a CPU-only torch starts a 13B run there without a word)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch

from ..nodes import comfy_env
from .workflow_format import is_link

log = logging.getLogger("HunyuanVideo")

# The DiT files of the released model are 13-26 GB; a file this large is real weights, not a stand-in.
REAL_SIZE_BYTES = 2 * 2**30
# (node type, input) -> how the precision line names it
PRECISION_INPUTS = {
    "HunyuanVideoModelLoader": (("weight_storage", "DiT weights"), ("base_precision", "DiT compute")),
    "HunyuanVideoTextEncoderLoader": (("precision", "text encoders"), ("llm_weights", "LLM weights")),
    "HunyuanVideoVAELoader": (("precision", "VAE"),),
}


def announce(api: dict[str, dict]) -> None:
    """Log the device and the precisions, and warn about real-size weights on the CPU."""
    device = comfy_env.compute_device()
    log.info("device: %s", describe_device(device))
    precisions = list(_precisions(api))
    if precisions:
        log.info("precision: %s", ", ".join(precisions))
    if device.type == "cpu":
        for name, size in _dit_files(api):
            if size >= REAL_SIZE_BYTES:
                log.warning(
                    "%s is %.1f GB of real weights and will run on the CPU: one step of a normal-size video takes "
                    "hours there. %s",
                    name,
                    size / 1e9,
                    _cpu_reason(),
                )


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return f"{device} ({properties.name}, {properties.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    return f"{device} ({torch.get_num_threads()} threads), torch {torch.__version__}. {_cpu_reason()}"


def _cpu_reason() -> str:
    if not torch.backends.cuda.is_built():
        return "This torch is a CPU-only build: for an NVIDIA GPU install a CUDA build (see the README's Install)."
    return "This torch has CUDA but finds no GPU (driver, CUDA_VISIBLE_DEVICES?)."


def _precisions(api: dict[str, dict]) -> Iterator[str]:
    for node in api.values():
        for name, label in PRECISION_INPUTS.get(node["class_type"], ()):
            value = node.get("inputs", {}).get(name)
            if value is not None and not is_link(value):
                yield f"{label} {value}"


def _dit_files(api: dict[str, dict]) -> Iterator[tuple[str, int]]:
    for node in api.values():
        name = node.get("inputs", {}).get("model_name")
        if node["class_type"] == "HunyuanVideoModelLoader" and isinstance(name, str):
            try:
                path = comfy_env.resolve_model("diffusion_models", name)
            except (OSError, ValueError):
                continue  # validation names it
            size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*"))
            yield name, size
