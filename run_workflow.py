"""Run a ComfyUI workflow with this pack's nodes, without ComfyUI.

    python3 run_workflow.py WORKFLOW.json [--models-dir DIR] [--output-dir DIR] [--set NODE.INPUT=VALUE ...]

The workflow may be in UI format (as saved from ComfyUI) or API format (Workflow > Export (API)).
See the README's "Headless runs" section, or ``--help``.
"""

import importlib.util
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent


def import_pack(name: str = "hunyuanvideo_pack"):
    """Import this folder as a package, whatever the folder is called (ComfyUI gives it any name)."""
    spec = importlib.util.spec_from_file_location(name, PACK_DIR / "__init__.py")
    pack = importlib.util.module_from_spec(spec)
    sys.modules[name] = pack
    spec.loader.exec_module(pack)
    return pack


if __name__ == "__main__":
    from importlib import import_module

    import_pack()
    sys.exit(import_module("hunyuanvideo_pack.headless.cli").main())
