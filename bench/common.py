"""Helpers shared by the bench scripts: import the pack the way ComfyUI does (under a package name)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_NAME = "hunyuanvideo_pack"


def import_pack():
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, PACK_DIR / "__init__.py")
    pack = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = pack
    spec.loader.exec_module(pack)
    return pack
