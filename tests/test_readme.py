"""The README tells a new user what they need (issue 17, item 12): a virtual environment for the first
commands, which torch build to get, the models folder as seen from custom_nodes, and the file names the
shared workflows really write."""

import json
import re

from conftest import PACK_DIR

README = (PACK_DIR / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_the_first_commands_run_in_a_virtual_environment():
    first = section("Two commands on a fresh machine")
    block = re.search(r"```bash\n(.*?)```", first, re.S).group(1)
    venv, install = block.index("python3 -m venv .venv"), block.index("pip install")
    assert venv < install and ". .venv/bin/activate" in block
    assert "run_workflow.py workflows/text_to_video_api.json" in block


def test_torch_builds_are_explained_for_users_not_for_this_machine():
    first = section("Two commands on a fresh machine")
    assert "these machines" not in README and "CPU build these" not in README
    assert "CPU-only build" in first and "CUDA" in first and "download.pytorch.org/whl/cpu" in first


def test_the_models_folder_is_given_as_seen_from_custom_nodes():
    assert "--models-dir ComfyUI/models" not in README
    assert "--models-dir ../../models" in README


def test_the_file_names_promised_are_the_ones_the_shared_workflows_write():
    headless = section("Headless runs (no ComfyUI)")
    first = section("Two commands on a fresh machine")
    for name in ("text_to_video", "low_vram", "gguf"):
        api = json.loads((PACK_DIR / "workflows" / f"{name}_api.json").read_text())
        (prefix,) = [n["inputs"]["filename_prefix"] for n in api.values() if n["class_type"] == "HunyuanVideoSaveVideo"]
        assert prefix == f"HunyuanVideo/{name}"
        assert f"`{prefix}_" in headless, prefix
    assert "`HunyuanVideo/text_to_video_00001_.mp4`" in headless
    assert "`output/HunyuanVideo/text_to_video_00001_.mp4`" in first
    assert "(`HunyuanVideo_00001_.mp4`" not in headless
