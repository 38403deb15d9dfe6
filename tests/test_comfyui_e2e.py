"""Every shared workflow, in both forms, run by a real ComfyUI server on tiny stand-in models.

Needs a ComfyUI checkout and the Python that runs it: set ``COMFYUI_DIR`` and ``COMFYUI_PYTHON``
(skipped otherwise). The server part is the acceptance harness ``shared/tools/comfy_accept.py`` beside
the checkout or one level up (or ``$COMFY_ACCEPT``): it links the pack into ``custom_nodes``, starts the server with the tiny
models added through ``--extra-model-paths-config``, converts the UI forms in the real frontend
when Chromium and playwright-core are there, and queues each workflow. Each shrunken copy saves
under its own prefix, so every video is checked: frame count and size.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from conftest import PACK_DIR
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS, demo_models
from hunyuanvideo_pack.nodes.headless import set_inputs
from hunyuanvideo_pack.nodes.workflow_format import ui_to_api, widgets

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON")
HARNESS = Path(
    os.environ.get("COMFY_ACCEPT")
    or next(
        (path for path in (d / "shared" / "tools" / "comfy_accept.py" for d in PACK_DIR.parents[:2]) if path.is_file()),
        PACK_DIR.parent / "shared" / "tools" / "comfy_accept.py",
    )
)
SIZE = {"width": 96, "height": 64, "frames": 9}
STEPS = 2

pytestmark = [
    pytest.mark.skipif(
        not (COMFYUI_DIR and COMFYUI_PYTHON),
        reason="set COMFYUI_DIR (a ComfyUI checkout) and COMFYUI_PYTHON (its Python) to run workflows in ComfyUI",
    ),
    pytest.mark.skipif(not HARNESS.is_file(), reason=f"the acceptance harness {HARNESS} is not there"),
]


def shrunken_copies(folder: Path) -> list[Path]:
    """Every workflow at SIZE and STEPS, saving under ``e2e/<file stem>``."""
    copies = []
    for path in sorted((PACK_DIR / "workflows").glob("*.json")):
        workflow = json.loads(path.read_text())
        if "nodes" in workflow:
            _shrink_ui(workflow, path.stem)
        else:
            overrides = demo_models.shrink_overrides(workflow, SIZE, STEPS)
            (save,) = [i for i, n in workflow.items() if n["class_type"] == "HunyuanVideoSaveVideo"]
            set_inputs(workflow, [*overrides, f"{save}.filename_prefix=e2e/{path.stem}"], NODE_CLASS_MAPPINGS)
        copies.append(folder / path.name)
        copies[-1].write_text(json.dumps(workflow, indent=2))
    return copies


def _shrink_ui(workflow: dict, stem: str) -> None:
    nodes = {str(node["id"]): node for node in workflow["nodes"]}
    api = ui_to_api(workflow, NODE_CLASS_MAPPINGS)
    overrides = demo_models.shrink_overrides(api, SIZE, STEPS)
    (save,) = [i for i, n in api.items() if n["class_type"] == "HunyuanVideoSaveVideo"]
    for override in [*overrides, f'{save}.filename_prefix="e2e/{stem}"']:
        target, value = override.split("=")
        node_id, name = target.split(".")
        _set_widget(nodes[node_id], name, json.loads(value))


def _set_widget(node: dict, name: str, value) -> None:
    position = 0
    for widget in widgets(NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES()):
        if widget.name == name:
            node["widgets_values"][position] = value
            return
        position += 1 + widget.extra_slots
    raise KeyError(name)


def test_every_workflow_writes_its_video_in_a_real_comfyui_server(tmp_path):
    models = demo_models.write_demo_models(tmp_path / "models")
    paths = tmp_path / "extra_model_paths.yaml"
    paths.write_text(
        "hunyuanvideo_tiny:\n"
        f"    base_path: {models}\n"
        "    diffusion_models: diffusion_models\n"
        "    text_encoders: text_encoders\n"
        "    vae: vae\n"
    )
    (tmp_path / "workflows").mkdir()
    copies = shrunken_copies(tmp_path / "workflows")
    output = tmp_path / "output"
    command = [
        sys.executable,
        str(HARNESS),
        "--comfy",
        COMFYUI_DIR,
        "--python",
        COMFYUI_PYTHON,
        "--pack",
        str(PACK_DIR),
        "--output-dir",
        str(output),
        f"--extra-args=--extra-model-paths-config {paths} --cache-none",
        *(f"--workflow={copy}" for copy in copies),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    print(run.stdout[-20000:], run.stderr[-5000:])
    assert run.returncode == 0, run.stdout[-5000:]
    assert f"workflows: {len(copies)} passed, 0 failed" in run.stdout
    for copy in copies:
        section = run.stdout.split(f"workflow {copy}\n", 1)[1].split("\nworkflow ", 1)[0]
        print(copy.name, re.search(r"status: \w+ \([\d.]+ s\)", section).group(0))
        with av.open(str(output / "e2e" / f"{copy.stem}_00001_.mp4")) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(video=0))
            assert (frames, stream.width, stream.height) == (SIZE["frames"], SIZE["width"], SIZE["height"]), copy
