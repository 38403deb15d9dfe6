"""Workflow files: the two JSON forms ComfyUI uses, and UI-to-API conversion as its frontend does it.

*UI format* is what the ComfyUI page saves and users share: nodes with positions, positional
``widgets_values`` and a ``links`` table. *API format* is what ``POST /prompt`` executes:
``{id: {"class_type", "inputs": {name: value or [source_id, output_index]}, "_meta"}}``.
The server only runs API format; the conversion happens in the browser (``graphToPrompt`` in
ComfyUI_frontend). :func:`ui_to_api` follows the same rules:

- ``widgets_values`` are assigned in order to the node's widget inputs: the INT, FLOAT, STRING,
  BOOLEAN and combo inputs without ``forceInput``, required then optional, in ``INPUT_TYPES``
  order. A linked input keeps its widget slot.
- Control widgets take a slot but are not sent: one after an INT whose ``control_after_generate``
  is set (or, when the option is absent, an INT named ``seed`` or ``noise_seed``); two (control and
  filter) after a combo with ``control_after_generate``.
- Links follow the ``links`` table through ``Reroute`` nodes; a ``PrimitiveNode``'s value is
  inlined; ``Note``/``MarkdownNote`` and muted nodes (mode 2) are dropped and inputs linked to muted
  nodes removed; a bypassed node (mode 4) passes on its input of the output's type.
- A list value is sent as ``{"__value__": [...]}``, because a bare list means a link.

- Load Image's upload button takes a slot after its file name and is not sent.

Subgraphs and group nodes are not converted (none of the pack's workflows use them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..nodes.widget_checks import input_options
from . import embedded

log = logging.getLogger("HunyuanVideo")

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
VIRTUAL_TYPES = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")
MUTED, BYPASSED = 2, 4

# ComfyUI core nodes that workflows may end in but the pack does not implement: their inputs (for
# the conversion) and display names, as in ComfyUI's nodes.py and comfy_extras/nodes_images.py.
CORE_NODES: dict[str, tuple[str, dict]] = {
    # Load Image: its file list is ComfyUI's input folder (the headless runner has its own, headless/load_image.py).
    "LoadImage": ("Load Image", {"required": {"image": ([], {"image_upload": True})}}),
    "PreviewImage": ("Preview Image", {"required": {"images": ("IMAGE",)}}),
    "SaveImage": (
        "Save Image",
        {"required": {"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}},
    ),
    "SaveAnimatedWEBP": (
        "SaveAnimatedWEBP",
        {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "lossless": ("BOOLEAN", {"default": True}),
                "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                "method": (["default", "fastest", "slowest"],),
            }
        },
    ),
}


class WorkflowError(ValueError):
    """A workflow file that cannot be read or converted; the message says what to change."""


@dataclass(frozen=True)
class Workflow:
    """A workflow ready to run: the API graph, and the UI graph it came from when there is one."""

    api: dict[str, dict]
    ui: dict | None = None


@dataclass(frozen=True)
class Widget:
    name: str
    spec: tuple
    extra_slots: int  # control widgets saved after this one in widgets_values


def load_workflow(path: str | Path, node_classes: Mapping[str, type]) -> Workflow:
    """Read a UI- or API-format workflow file, a saved ``/prompt`` request body, or a PNG or video
    that ComfyUI (or this pack) saved with its workflow."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise WorkflowError(f"cannot read workflow {path}: {error}") from error
    kind = embedded.file_kind(raw[:16])
    if kind is not None:
        return _embedded_workflow(path, kind, node_classes)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise WorkflowError(
            f"{path} is not a workflow: it is a binary file, not JSON text. Give the .json file ComfyUI saved "
            f"(Workflow > Save, or Export (API)), or a PNG or video that ComfyUI saved with its workflow."
        ) from None
    except json.JSONDecodeError as error:
        raise WorkflowError(f"cannot read workflow {path}: {error}") from error
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        return Workflow(api=ui_to_api(data, node_classes), ui=data)
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        workflow = ((data.get("extra_data") or {}).get("extra_pnginfo") or {}).get("workflow")
        return Workflow(api=_checked_api(data["prompt"], path), ui=workflow)
    return Workflow(api=_checked_api(data, path))


def _embedded_workflow(path: Path, kind: str, node_classes: Mapping[str, type]) -> Workflow:
    # The stored prompt is the graph exactly as it ran; the UI workflow beside it rebuilds it in the page.
    what = "PNG image" if kind == "png" else "video"
    try:
        graphs = embedded.embedded_graphs(path, kind)
    except ValueError as error:
        raise WorkflowError(f"{path} is a {what} whose workflow cannot be read: {error}.") from error
    ui = graphs.get("workflow") if isinstance(graphs.get("workflow"), dict) else None
    if isinstance(graphs.get("prompt"), dict):
        return Workflow(api=_checked_api(graphs["prompt"], path), ui=ui)
    if ui is not None and isinstance(ui.get("nodes"), list):
        return Workflow(api=ui_to_api(ui, node_classes), ui=ui)
    raise WorkflowError(
        f"{path} is a {what} without a workflow in it (ComfyUI stores one unless it runs with --disable-metadata). "
        f"Give the workflow's .json file instead."
    )


def _checked_api(data, path) -> dict[str, dict]:
    if isinstance(data, dict) and data and all(isinstance(n, dict) and "class_type" in n for n in data.values()):
        return {str(node_id): node for node_id, node in data.items()}
    raise WorkflowError(
        f"{path} is neither a UI-format workflow (with 'nodes' and 'links') nor an API-format one "
        f"({{id: {{'class_type': ..., 'inputs': ...}}}}). Save it from ComfyUI with Workflow > Save, "
        f"or Workflow > Export (API)."
    )


def node_inputs(class_type: str, node_classes: Mapping[str, type]) -> tuple[dict, str]:
    """``INPUT_TYPES()`` and display name of a pack node or of a known ComfyUI core node."""
    if class_type in node_classes:
        cls = node_classes[class_type]
        return cls.INPUT_TYPES(), getattr(cls, "DISPLAY_NAME", class_type)
    if class_type in CORE_NODES:
        display_name, inputs = CORE_NODES[class_type]
        return inputs, display_name
    raise WorkflowError(
        f"node type {class_type!r} is neither a node of this pack nor a ComfyUI core node the headless "
        f"runner knows; run this workflow inside ComfyUI with the node pack that provides it installed."
    )


def widgets(input_types: dict) -> list[Widget]:
    """The widget inputs of a node, in the order the frontend creates (and saves) them."""
    found = []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            kind = spec[0]
            options = input_options(spec)
            is_combo = isinstance(kind, list) or kind == "COMBO"
            if options.get("forceInput") or not (is_combo or kind in WIDGET_TYPES):
                continue
            control = options.get("control_after_generate")
            if kind == "INT" and control is None:
                control = name in ("seed", "noise_seed")  # the frontend's legacy naming convention
            extra = (2 if is_combo else 1) if control and (is_combo or kind == "INT") else 0
            extra += 1 if options.get("image_upload") else 0  # Load Image's upload button saves a value too
            found.append(Widget(name, tuple(spec), extra))
    return found


def widget_default(spec: tuple):
    """The value the frontend gives a new widget of ``spec``."""
    kind = spec[0]
    options = input_options(spec)
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else None
    if kind == "COMBO":
        return (options.get("options") or [None])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def ui_to_api(workflow: dict, node_classes: Mapping[str, type]) -> dict[str, dict]:
    """Convert a UI-format workflow to the API graph ComfyUI's frontend would queue for it."""
    if (workflow.get("definitions") or {}).get("subgraphs") or (workflow.get("extra") or {}).get("groupNodes"):
        raise WorkflowError(
            "this workflow uses subgraphs or group nodes, which only ComfyUI's page can flatten: open it in "
            "ComfyUI and save it with Workflow > Export (API), then run that file."
        )
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links_table(workflow)
    api = {}
    for node in nodes.values():
        if node["type"] in VIRTUAL_TYPES or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        input_types, display_name = node_inputs(node["type"], node_classes)
        inputs = _widget_values(node, widgets(input_types))
        for slot in node.get("inputs") or []:
            source = _resolve(slot.get("link"), nodes, links)
            if source is not None:
                inputs[slot["name"]] = source
        api[str(node["id"])] = {
            "inputs": inputs,
            "class_type": node["type"],
            "_meta": {"title": node.get("title") or display_name},
        }
    for entry in api.values():  # inputs fed by muted nodes go, as in the frontend
        inputs = entry["inputs"]
        for name, value in list(inputs.items()):
            if is_link(value) and value[0] not in api:
                del inputs[name]
    return api


def _links_table(workflow: dict) -> dict[int, tuple[int, int, str | None]]:
    # link id -> (origin node id, origin slot, type); old files store lists, newer ones objects
    table = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            table[link["id"]] = (link["origin_id"], link["origin_slot"], link.get("type"))
        else:
            table[link[0]] = (link[1], link[2], link[5] if len(link) > 5 else None)
    return table


def _widget_values(node: dict, node_widgets: list[Widget]) -> dict:
    saved = node.get("widgets_values")
    values = {}
    if isinstance(saved, dict):
        values = {w.name: saved[w.name] for w in node_widgets if w.name in saved}
    elif isinstance(saved, list):
        position = 0
        for widget in node_widgets:
            if position >= len(saved):
                break
            values[widget.name] = saved[position]
            position += 1 + widget.extra_slots
        if position < len(saved):
            log.warning(
                "node %s (%s): %d saved widget value(s) beyond its inputs were ignored; was it saved "
                "with another version of the node?",
                node["id"],
                node["type"],
                len(saved) - position,
            )
    for widget in node_widgets:
        values.setdefault(widget.name, widget_default(widget.spec))
    return {name: {"__value__": v} if isinstance(v, list) else v for name, v in values.items()}


def _resolve(link_id, nodes: dict, links: dict, depth: int = 0):
    """What feeds a link: ``[source_id, slot]``, an inlined value, or None (unconnected)."""
    if link_id is None or link_id not in links or depth > len(nodes):
        return None
    origin_id, origin_slot, link_type = links[link_id]
    origin = nodes.get(origin_id)
    if origin is None or origin["type"] in ("Note", "MarkdownNote"):
        return None
    if origin["type"] == "Reroute":
        return _resolve(_input_link(origin, 0), nodes, links, depth + 1)
    if origin["type"] == "PrimitiveNode":
        value = (origin.get("widgets_values") or [None])[0]
        return {"__value__": value} if isinstance(value, list) else value
    if origin.get("mode", 0) == BYPASSED:
        return _resolve(_bypass_input(origin, origin_slot, link_type), nodes, links, depth + 1)
    return [str(origin_id), origin_slot]


def _input_link(node: dict, index: int):
    inputs = node.get("inputs") or []
    return inputs[index].get("link") if index < len(inputs) else None


def _bypass_input(node: dict, slot: int, link_type: str | None):
    # The input at the same index if its type matches, else the first input of that type.
    outputs = node.get("outputs") or []
    wanted = outputs[slot].get("type") if slot < len(outputs) else link_type
    inputs = node.get("inputs") or []
    if slot < len(inputs) and inputs[slot].get("type") == wanted:
        return inputs[slot].get("link")
    return next((i.get("link") for i in inputs if i.get("type") == wanted), None)


def is_link(value) -> bool:
    """Whether an API-format input value is a link ``[source_id, output_index]``."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
