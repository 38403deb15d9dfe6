"""Running a snippet inside a real ComfyUI (``COMFYUI_DIR``, run by ``COMFYUI_PYTHON``, else this Python),
on the CPU, with the pack imported as ComfyUI imports it (as ``pack``). ComfyUI's memory management is
module-level state, so each snippet gets its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import PACK_DIR

PRELUDE = """
import gc, importlib.util, inspect, sys
import torch
sys.path.insert(0, {comfy!r})
sys.argv = ["main.py", "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import comfy.model_management as mm
import comfy.model_patcher
spec = importlib.util.spec_from_file_location("pack", {init!r})
pack = importlib.util.module_from_spec(spec)
sys.modules["pack"] = pack
spec.loader.exec_module(pack)
from pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer
from pack.hunyuan_model.handle import PlacedModel, TransformerHandle, module_bytes
from pack.nodes import comfy_env

assert type(comfy_env.host()).__name__ == "ComfyUIHost"
cpu, meta = torch.device("cpu"), torch.device("meta")
# ComfyUI 0.18+ (dynamic VRAM, pinned RAM): free_memory takes the RAM it must free as well.
CURRENT = "pins_required" in inspect.signature(mm.free_memory).parameters
"""


def comfyui_dir() -> str:
    comfy = os.environ.get("COMFYUI_DIR")
    if not comfy or not os.path.isfile(os.path.join(comfy, "comfy", "model_management.py")):
        pytest.skip("COMFYUI_DIR does not point at a ComfyUI checkout")
    return comfy


def run_in_comfyui(body: str) -> str:
    """Run ``body`` after :data:`PRELUDE`; it must print ``ok`` last. Returns its output."""
    prelude = PRELUDE.format(comfy=comfyui_dir(), init=str(PACK_DIR / "__init__.py"))
    script = prelude + textwrap.dedent(body)
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    run = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
    return run.stdout
