"""UI-format -> API-format conversion, checked against graphs whose API form is worked out by hand."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from conftest import PACK_DIR
from hunyuanvideo_pack.headless.workflow_format import (
    CORE_NODES,
    WorkflowError,
    load_workflow,
    ui_to_api,
    widgets,
)
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS


class ToySampler:
    """Every widget rule at once: seeds by name, explicit control options, forceInput, optional widgets."""

    DISPLAY_NAME = "Toy Sampler"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent": ("LATENT",),
                "seed": ("INT", {"default": 0}),  # control widget by the legacy name rule
                "steps": ("INT", {"default": 30}),
                "variant": (["a", "b"], {"control_after_generate": True}),  # control + filter widgets
                "noise_seed": ("INT", {"control_after_generate": False}),  # option wins over the name
                "shift": ("FLOAT", {"default": 7.0}),
                "offset": ("INT", {"forceInput": True}),  # a socket, never a widget
                "counter": ("INT", {"default": 5, "control_after_generate": True}),
            },
            "optional": {"tags": ("STRING", {"default": ""}), "mode": ("COMBO", {"options": ["x", "y"]})},
            "hidden": {"prompt": "PROMPT"},
        }


class ToyFilter:
    DISPLAY_NAME = "Toy Filter"
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"mask": ("MASK",), "images": ("IMAGE",), "strength": ("FLOAT", {"default": 1.0})}}


CLASSES = {**NODE_CLASS_MAPPINGS, "ToySampler": ToySampler, "ToyFilter": ToyFilter}


def node(id, type, widgets_values=None, inputs=(), outputs=(), mode=0, title=None):
    entry = {"id": id, "type": type, "mode": mode, "inputs": [dict(i) for i in inputs], "outputs": list(outputs)}
    if widgets_values is not None:
        entry["widgets_values"] = widgets_values
    if title:
        entry["title"] = title
    return entry


def slot(name, type, link=None):
    return {"name": name, "type": type, "link": link}


def ui_graph():
    """Latent -> sampler -> reroute -> save video; a primitive feeds a converted widget; a note,
    a muted save, a bypassed filter before a preview, and a node fed only by a muted one."""
    nodes = [
        node(1, "HunyuanVideoEmptyLatent", [848, 480, 73, 1], outputs=[{"name": "LATENT", "type": "LATENT"}]),
        node(
            2,
            "ToySampler",
            [42, "randomize", 30, "b", "increment", "", 3, 6.5, 9, "fixed", ["t1", "t2"]],
            inputs=[slot("latent", "LATENT", 1), slot("steps", "INT", 2), slot("offset", "INT", 3)],
            outputs=[{"name": "IMAGE", "type": "IMAGE"}],
            title="My sampler",
        ),
        node(3, "Reroute", inputs=[slot("", "*", 4)], outputs=[{"name": "", "type": "IMAGE"}]),
        node(4, "HunyuanVideoSaveVideo", ["clips/cat", "webm", 24, 31], inputs=[slot("images", "IMAGE", 5)]),
        node(5, "Note", ["remember the milk"]),
        node(6, "PrimitiveNode", [12, "fixed"], outputs=[{"name": "INT", "type": "INT"}]),
        node(7, "PrimitiveNode", [-4], outputs=[{"name": "INT", "type": "INT"}]),
        node(8, "SaveAnimatedWEBP", ["x", 6, True, 80, "default"], inputs=[slot("images", "IMAGE", 6)], mode=2),
        node(
            9,
            "ToyFilter",
            [0.5],
            inputs=[slot("mask", "MASK"), slot("images", "IMAGE", 7)],
            outputs=[{"name": "IMAGE", "type": "IMAGE"}],
            mode=4,
        ),
        node(10, "PreviewImage", inputs=[slot("images", "IMAGE", 8)]),
        node(11, "ToyFilter", [2.0], inputs=[slot("images", "IMAGE", 9)], mode=2, outputs=[{"type": "IMAGE"}]),
        node(12, "PreviewImage", inputs=[slot("images", "IMAGE", 10)]),
    ]
    links = [
        [1, 1, 0, 2, 0, "LATENT"],
        [2, 6, 0, 2, 1, "INT"],
        [3, 7, 0, 2, 2, "INT"],
        [4, 2, 0, 3, 0, "IMAGE"],
        [5, 3, 0, 4, 0, "IMAGE"],
        [6, 3, 0, 8, 0, "IMAGE"],
        [7, 2, 0, 9, 1, "IMAGE"],
        [8, 9, 0, 10, 0, "IMAGE"],
        {"id": 9, "origin_id": 2, "origin_slot": 0, "target_id": 11, "target_slot": 0, "type": "IMAGE"},
        {"id": 10, "origin_id": 11, "origin_slot": 0, "target_id": 12, "target_slot": 0, "type": "IMAGE"},
    ]
    return {"last_node_id": 12, "last_link_id": 10, "nodes": nodes, "links": links, "version": 0.4}


EXPECTED = {
    "1": {
        "inputs": {"width": 848, "height": 480, "frames": 73, "batch": 1},
        "class_type": "HunyuanVideoEmptyLatent",
        "_meta": {"title": "HunyuanVideo Empty Latent"},
    },
    "2": {
        "inputs": {
            "seed": 42,
            "steps": 12,  # the primitive's value replaces the widget's 30
            "variant": "b",
            "noise_seed": 3,
            "shift": 6.5,
            "counter": 9,
            "tags": {"__value__": ["t1", "t2"]},
            "mode": "x",  # not saved: the frontend's default, the first option
            "latent": ["1", 0],
            "offset": -4,
        },
        "class_type": "ToySampler",
        "_meta": {"title": "My sampler"},
    },
    "4": {
        "inputs": {"filename_prefix": "clips/cat", "format": "webm", "fps": 24, "crf": 31, "images": ["2", 0]},
        "class_type": "HunyuanVideoSaveVideo",
        "_meta": {"title": "HunyuanVideo Save Video"},
    },
    "10": {"inputs": {"images": ["2", 0]}, "class_type": "PreviewImage", "_meta": {"title": "Preview Image"}},
    "12": {"inputs": {}, "class_type": "PreviewImage", "_meta": {"title": "Preview Image"}},
}


def test_a_hand_made_ui_graph_converts_to_the_api_graph_worked_out_by_hand():
    assert ui_to_api(ui_graph(), CLASSES) == EXPECTED


def test_widget_slots_follow_input_order_with_control_widgets():
    found = [(w.name, w.extra_slots) for w in widgets(ToySampler.INPUT_TYPES())]
    assert found == [
        ("seed", 1),
        ("steps", 0),
        ("variant", 2),
        ("noise_seed", 0),
        ("shift", 0),
        ("counter", 1),
        ("tags", 0),
        ("mode", 0),
    ]


def test_a_seed_without_its_saved_control_value_shifts_later_values_as_in_the_frontend():
    # Positional, like the frontend: the value after the seed is taken as its control value.
    graph = {"nodes": [node(1, "ToySampler", [42, 30, "b"], inputs=[slot("latent", "LATENT")])], "links": []}
    inputs = ui_to_api(graph, CLASSES)["1"]["inputs"]
    assert (inputs["seed"], inputs["steps"], inputs["variant"]) == (42, "b", "a")


def test_dict_widget_values_are_matched_by_name():
    graph = {"nodes": [node(1, "ToyFilter", {"strength": 0.25, "bogus": 1})], "links": []}
    assert ui_to_api(graph, CLASSES)["1"]["inputs"] == {"strength": 0.25}


def test_subgraphs_and_unknown_types_are_refused_with_a_way_out():
    graph = ui_graph() | {"definitions": {"subgraphs": [{"id": "x"}]}}
    with pytest.raises(WorkflowError, match=r"Export \(API\)"):
        ui_to_api(graph, CLASSES)
    graph = {"nodes": [node(1, "KSampler", [1])], "links": []}
    with pytest.raises(WorkflowError, match="'KSampler' is neither a node of this pack"):
        ui_to_api(graph, CLASSES)


def test_core_node_table_matches_comfyui_where_a_checkout_is_present():
    comfy = Path(os.environ.get("COMFYUI_DIR", "/nonexistent"))
    if not (comfy / "nodes.py").is_file():
        pytest.skip("COMFYUI_DIR does not point at a ComfyUI checkout")
    source = (comfy / "nodes.py").read_text() + (comfy / "comfy_extras" / "nodes_images.py").read_text()
    for class_type, (_, inputs) in CORE_NODES.items():
        assert f"class {class_type}" in source
        for name in inputs["required"]:
            assert f'"{name}"' in source, (class_type, name)


def test_load_workflow_reads_both_forms_and_a_request_body(tmp_path):
    ui_file, api_file, body_file = tmp_path / "ui.json", tmp_path / "api.json", tmp_path / "body.json"
    ui_file.write_text(json.dumps(ui_graph()))
    api_file.write_text(json.dumps(EXPECTED))
    body_file.write_text(json.dumps({"prompt": EXPECTED, "extra_data": {"extra_pnginfo": {"workflow": ui_graph()}}}))

    from_ui, from_api, from_body = (load_workflow(f, CLASSES) for f in (ui_file, api_file, body_file))
    assert from_ui.api == from_api.api == from_body.api == EXPECTED
    assert from_ui.ui == from_body.ui == ui_graph()
    assert from_api.ui is None


def test_load_workflow_says_what_a_wrong_file_is(tmp_path):
    (tmp_path / "bad.json").write_text('{"hello": 1}')
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(WorkflowError, match="neither a UI-format workflow"):
        load_workflow(tmp_path / "bad.json", CLASSES)
    with pytest.raises(WorkflowError, match="cannot read workflow"):
        load_workflow(tmp_path / "broken.json", CLASSES)


def _harness_converter():
    for shared in (PACK_DIR.parent / "shared", PACK_DIR.parent.parent / "shared"):
        path = shared / "tools" / "comfy_accept.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("comfy_accept", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.convert_ui_to_api
    pytest.skip("the acceptance harness (../shared/tools/comfy_accept.py) is not beside this checkout")


def test_the_acceptance_harness_converter_agrees():
    convert = _harness_converter()
    object_info = {
        name: {
            "input": cls.INPUT_TYPES(),
            "input_order": {k: list(v) for k, v in cls.INPUT_TYPES().items() if k != "hidden"},
            "display_name": getattr(cls, "DISPLAY_NAME", name),
        }
        for name, cls in CLASSES.items()
    }
    object_info.update(
        (name, {"input": inputs, "input_order": {"required": list(inputs["required"])}, "display_name": title})
        for name, (title, inputs) in CORE_NODES.items()
    )
    graph = ui_graph()
    # The frontend (and ui_to_api) save two control values after a combo with control_after_generate;
    # the harness converter expects none there.
    del graph["nodes"][1]["widgets_values"][4:6]
    theirs, warnings = convert(graph, object_info)
    assert warnings == []
    assert theirs == EXPECTED
