"""Shared fixtures. The pack is imported the way ComfyUI imports ``custom_nodes/<folder>``:
as a package from its ``__init__.py`` under a name unrelated to the folder, so absolute imports of
the pack's own modules would fail here just as they would in ComfyUI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_NAME = "hunyuanvideo_pack"


def import_pack(name: str = PACK_NAME):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PACK_DIR / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


import_pack()


@pytest.fixture
def models_dir(tmp_path):
    """An empty standalone models directory with ComfyUI's folder names, configured as current."""
    from hunyuanvideo_pack.nodes import comfy_env

    for folders in comfy_env.MODEL_FOLDERS.values():
        for folder in folders:
            (tmp_path / "models" / folder).mkdir(parents=True, exist_ok=True)
    previous = dict(comfy_env._standalone)
    comfy_env.configure(models_dir=tmp_path / "models", output_dir=tmp_path / "output")
    yield tmp_path / "models"
    comfy_env._standalone.update(previous)
