"""The workflow a saved video carries reproduces the run (issue 17, item 3), and such a video (or a PNG)
given as the workflow runs it again (item 7)."""

import json
import struct
import zlib

import av
import numpy as np
import pytest

from conftest import PACK_DIR
from hunyuanvideo_pack.headless.cli import main
from hunyuanvideo_pack.headless.ui_form import ui_from_api, with_run_values
from hunyuanvideo_pack.headless.workflow_format import load_workflow, ui_to_api
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS

SMALL = ["--set", "4.width=64", "--set", "4.height=32", "--set", "4.frames=5", "--set", "5.steps=1"]


def frontend_schema_problems(workflow: dict) -> list[str]:
    """What ComfyUI's page (frontend 1.27, zComfyWorkflow in workflowSchema.ts) would refuse in a 0.4 workflow."""
    problems = [
        f"missing {key}" for key in ("last_node_id", "last_link_id", "nodes", "links", "version") if key not in workflow
    ]
    for node in workflow.get("nodes", []):
        for key, kind in (
            ("id", int),
            ("type", str),
            ("pos", list),
            ("size", list),
            ("flags", dict),
            ("order", int),
            ("mode", int),
            ("properties", dict),
        ):
            if not isinstance(node.get(key), kind):
                problems.append(f"node {node.get('id')}: {key} is {node.get(key)!r}")
        for slot in [*node.get("inputs", []), *node.get("outputs", [])]:
            if not (isinstance(slot.get("name"), str) and isinstance(slot.get("type"), str)):
                problems.append(f"node {node.get('id')}: slot {slot}")
    for link in workflow.get("links", []):
        if len(link) != 6 or not all(isinstance(x, int) for x in link[:5]) or not isinstance(link[5], str):
            problems.append(f"link {link}")
    return problems


def run(workflow, demo_models_dir, tmp_path, *extra) -> list:
    output = tmp_path / "out"
    status = main([str(workflow), "--models-dir", str(demo_models_dir), "--output-dir", str(output), *extra])
    assert status == 0
    return sorted(output.rglob("*.mp4"))


def metadata(path) -> dict:
    with av.open(str(path)) as container:
        return {key: json.loads(value) for key, value in container.metadata.items() if key in ("workflow", "prompt")}


def pixels(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.mark.parametrize("name", ["text_to_video_api.json", "gguf_api.json", "low_vram_api.json"])
def test_an_api_graph_gets_a_ui_workflow_that_converts_back_to_it(name):
    api = json.loads((PACK_DIR / "workflows" / name).read_text())
    ui = ui_from_api(api, NODE_CLASS_MAPPINGS)
    assert frontend_schema_problems(ui) == []
    assert ui_to_api(ui, NODE_CLASS_MAPPINGS) == api


def test_the_ui_workflow_built_from_an_api_graph_matches_what_the_page_saved():
    # The shipped pair was saved by ComfyUI's page from one graph: the same sockets, links and widget values.
    saved = json.loads((PACK_DIR / "workflows" / "text_to_video.json").read_text())
    built = ui_from_api(
        json.loads((PACK_DIR / "workflows" / "text_to_video_api.json").read_text()), NODE_CLASS_MAPPINGS
    )
    saved_nodes = {node["id"]: node for node in saved["nodes"] if node["type"] != "MarkdownNote"}
    for node in built["nodes"]:
        page = saved_nodes[node["id"]]
        assert node["widgets_values"] == page["widgets_values"], node["type"]
        assert [(s["name"], s["type"], s["link"]) for s in node["inputs"]] == [
            (s["name"], s["type"], s["link"]) for s in page["inputs"]
        ]
        assert [(s["name"], s["type"], s["links"]) for s in node["outputs"]] == [
            (s["name"], s["type"], s["links"]) for s in page["outputs"]
        ]
    assert sorted(built["links"]) == sorted(saved["links"])


def test_run_values_replace_the_saved_widgets_and_primitive_values():
    ui = json.loads((PACK_DIR / "workflows" / "text_to_video.json").read_text())
    api = ui_to_api(ui, NODE_CLASS_MAPPINGS)
    api["4"]["inputs"] |= {"width": 64, "frames": 5}
    api["5"]["inputs"] |= {"seed": 7, "offload_model": False}
    updated = with_run_values(ui, api, NODE_CLASS_MAPPINGS)
    assert ui_to_api(updated, NODE_CLASS_MAPPINGS) == api
    sampler = next(node for node in updated["nodes"] if node["id"] == 5)
    assert sampler["widgets_values"] == [7, "fixed", 30, 7, 6, 1, False, "euler"]  # the control slot kept
    assert ui["nodes"][4]["widgets_values"][0] == 42  # the original is untouched
    ui["nodes"].append(
        {"id": 20, "type": "PrimitiveNode", "widgets_values": [30, "fixed"], "outputs": [{"links": [99]}]}
    )
    ui["links"].append([99, 20, 0, 5, 4, "INT"])
    sampler = next(node for node in ui["nodes"] if node["id"] == 5)
    sampler["inputs"].append({"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": 99})
    api = ui_to_api(ui, NODE_CLASS_MAPPINGS)
    api["5"]["inputs"]["steps"] = 3
    assert next(n for n in with_run_values(ui, api, NODE_CLASS_MAPPINGS)["nodes"] if n["id"] == 20)[
        "widgets_values"
    ] == [3, "fixed"]


def test_the_readme_command_stores_a_workflow_that_rebuilds_the_run_and_the_video_runs_again(demo_models_dir, tmp_path):
    (first,) = run(PACK_DIR / "workflows" / "text_to_video_api.json", demo_models_dir, tmp_path, *SMALL)
    stored = metadata(first)
    assert frontend_schema_problems(stored["workflow"]) == []
    assert ui_to_api(stored["workflow"], NODE_CLASS_MAPPINGS) == stored["prompt"]
    assert stored["prompt"]["4"]["inputs"]["width"] == 64 and stored["prompt"]["5"]["inputs"]["steps"] == 1

    # The video itself, given as the workflow, makes the same video again.
    first.rename(tmp_path / "made.mp4")
    (again,) = run(tmp_path / "made.mp4", demo_models_dir, tmp_path)
    assert metadata(again) == stored
    assert np.array_equal(pixels(again), pixels(tmp_path / "made.mp4"))


def test_a_ui_workflow_run_with_overrides_stores_the_values_that_ran(demo_models_dir, tmp_path):
    (video,) = run(
        PACK_DIR / "workflows" / "text_to_video.json", demo_models_dir, tmp_path, *SMALL, "--set", "5.seed=7"
    )
    stored = metadata(video)
    sampler = next(node for node in stored["workflow"]["nodes"] if node["id"] == 5)
    assert sampler["widgets_values"][:3] == [7, "fixed", 1]
    assert ui_to_api(stored["workflow"], NODE_CLASS_MAPPINGS) == stored["prompt"]


def png_with(chunks: dict[str, str], kind: bytes = b"tEXt") -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    body = b""
    for key, text in chunks.items():
        if kind == b"tEXt":
            body += chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))
        else:  # compressed iTXt, as PIL writes non-Latin-1 text
            body += chunk(b"iTXt", key.encode() + b"\0\x01\x00\0\0" + zlib.compress(text.encode()))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + body + chunk(b"IEND", b"")


@pytest.mark.parametrize("kind", [b"tEXt", b"iTXt"])
def test_a_png_saved_by_comfyui_gives_its_workflow(tmp_path, kind):
    ui = json.loads((PACK_DIR / "workflows" / "text_to_video.json").read_text())
    api = ui_to_api(ui, NODE_CLASS_MAPPINGS)
    api["3"]["inputs"]["prompt"] = "ein Hund läuft am Strand 🐕" if kind == b"iTXt" else "a dog"
    (tmp_path / "image.png").write_bytes(png_with({"prompt": json.dumps(api), "workflow": json.dumps(ui)}, kind))
    workflow = load_workflow(tmp_path / "image.png", NODE_CLASS_MAPPINGS)
    assert workflow.api == api and workflow.ui == ui
    (tmp_path / "ui_only.png").write_bytes(png_with({"workflow": json.dumps(ui)}, kind))
    assert load_workflow(tmp_path / "ui_only.png", NODE_CLASS_MAPPINGS).api == ui_to_api(ui, NODE_CLASS_MAPPINGS)
