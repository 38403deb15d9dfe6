"""The UI-form workflow a saved file carries, made to match the run that wrote it.

ComfyUI's page rebuilds a graph from the ``workflow`` stored in a PNG or video (app.ts
``handleFile`` -> ``loadGraphData``); only when there is none does it fall back to the ``prompt``.
Two things would make that workflow lie about the run:

- a UI workflow run with ``--set`` (or the demo's shrinking) still holds the old widget values:
  :func:`with_run_values` writes the values that ran back into ``widgets_values`` (and into the
  PrimitiveNodes that feed converted widgets);
- an API-form run has no UI workflow at all: :func:`ui_from_api` builds one, laid out left to right
  by dependency depth, in the form the frontend saves (version 0.4: ``nodes`` with ``pos``, ``size``,
  ``flags``, ``order``, ``mode``, ``properties``; ``links`` as ``[id, from, slot, to, slot, type]``;
  the schema is ``zComfyWorkflow`` in ComfyUI_frontend's ``workflowSchema.ts``).

Either way :func:`..workflow_format.ui_to_api` of the result gives back the graph that ran.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from .workflow_format import VIRTUAL_TYPES, Widget, is_link, node_inputs, widget_default, widgets

_COLUMN_WIDTH, _ROW_GAP, _NODE_WIDTH = 360, 40, 320


def with_run_values(ui: dict, api: dict[str, dict], node_classes: Mapping[str, type]) -> dict:
    """A copy of UI workflow ``ui`` whose widget values are those of the API graph ``api`` that ran."""
    ui = copy.deepcopy(ui)
    nodes = {str(node["id"]): node for node in ui.get("nodes") or []}
    origins = {_link_id(link): _link_origin(link) for link in ui.get("links") or []}
    for node_id, node in nodes.items():
        if node_id not in api or node.get("type") in VIRTUAL_TYPES:
            continue
        ran = api[node_id].get("inputs", {})
        node_widgets = widgets(node_inputs(node["type"], node_classes)[0])
        _write_widgets(node, node_widgets, ran)
        for slot in node.get("inputs") or []:  # converted widgets fed by a PrimitiveNode
            origin = nodes.get(str(origins.get(slot.get("link"))))
            value = ran.get(slot.get("name"))
            if (
                origin is not None
                and origin.get("type") == "PrimitiveNode"
                and value is not None
                and not is_link(value)
            ):
                origin.setdefault("widgets_values", [None])[0] = _plain(value)
    return ui


def _write_widgets(node: dict, node_widgets: list[Widget], ran: dict) -> None:
    saved = node.get("widgets_values")
    if isinstance(saved, dict):
        for widget in node_widgets:
            if widget.name in ran and not is_link(ran[widget.name]):
                saved[widget.name] = _plain(ran[widget.name])
        return
    if not isinstance(saved, list):
        saved = node["widgets_values"] = []
    position = 0
    for widget in node_widgets:
        value = ran.get(widget.name)
        if value is not None and not is_link(value):
            saved.extend([None] * (position + 1 - len(saved)))
            saved[position] = _plain(value)
        position += 1 + widget.extra_slots


def ui_from_api(api: dict[str, dict], node_classes: Mapping[str, type]) -> dict:
    """A UI-form workflow for API graph ``api``, as the page would save it had it been built there."""
    ids = _ui_ids(api)
    links, link_ids = [], {}
    for target, node in api.items():
        for name, value in node.get("inputs", {}).items():
            if is_link(value) and value[0] in api:
                link_ids[target, name] = len(links) + 1
                links.append([len(links) + 1, ids[value[0]], value[1], ids[target], None, None])
    columns = _depths(api)
    rows: dict[int, int] = {}
    nodes = []
    for order, (node_id, node) in enumerate(api.items()):
        column = columns[node_id]
        ui_node = _ui_node(node_id, node, ids, links, link_ids, node_classes)
        height = 60 + 26 * (len(ui_node["inputs"]) + len(ui_node.get("widgets_values", [])))
        ui_node |= {"pos": [40 + column * _COLUMN_WIDTH, 40 + rows.get(column, 0)], "size": [_NODE_WIDTH, height]}
        ui_node["order"] = order
        rows[column] = rows.get(column, 0) + height + _ROW_GAP
        nodes.append(ui_node)
    return {
        "last_node_id": max(ids.values(), default=0),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
    }


def _ui_node(node_id, node, ids, links, link_ids, node_classes) -> dict:
    class_type = node["class_type"]
    input_types, display_name = node_inputs(class_type, node_classes)
    node_widgets = {widget.name: widget for widget in widgets(input_types)}
    values = node.get("inputs", {})
    inputs, widgets_values = [], []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            link = link_ids.get((node_id, name))
            if link is not None:
                links[link - 1][4:] = [len(inputs), kind]
            if name in node_widgets:
                widget = node_widgets[name]
                value = values.get(name)
                widgets_values.append(_widget_value(widget, value))
                widgets_values += ["fixed", ""][: widget.extra_slots]  # control_after_generate: the value as run
                if link is not None:  # a widget converted to a socket
                    inputs.append({"name": name, "type": kind, "widget": {"name": name}, "link": link})
                continue
            slot = {"name": name, "type": kind, "link": link}
            inputs.append(slot | ({"shape": 7} if section == "optional" else {}))
    cls = node_classes.get(class_type)
    returns = getattr(cls, "RETURN_TYPES", ())
    names = getattr(cls, "RETURN_NAMES", None) or returns
    outputs = [
        {
            "name": names[slot],
            "type": kind,
            "slot_index": slot,
            "links": [link[0] for link in links if link[1] == ids[node_id] and link[2] == slot],
        }
        for slot, kind in enumerate(returns)
    ]
    title = (node.get("_meta") or {}).get("title")
    return {
        "id": ids[node_id],
        "type": class_type,
        "flags": {},
        "mode": 0,
        "inputs": inputs,
        "outputs": outputs,
        "properties": {"Node name for S&R": class_type},
        "widgets_values": widgets_values,
        **({"title": title} if title and title != display_name else {}),
    }


def _widget_value(widget: Widget, value):
    return widget_default(widget.spec) if value is None or is_link(value) else _plain(value)


def _ui_ids(api: dict[str, dict]) -> dict[str, int]:
    # The page numbers nodes; API ids are those numbers as text, unless the graph was written by hand.
    if all(node_id.isdigit() for node_id in api):
        return {node_id: int(node_id) for node_id in api}
    return {node_id: index for index, node_id in enumerate(api, 1)}


def _depths(api: dict[str, dict]) -> dict[str, int]:
    depths: dict[str, int] = {}

    def depth(node_id: str, seen: frozenset = frozenset()) -> int:
        if node_id not in depths:
            sources = [v[0] for v in api[node_id].get("inputs", {}).values() if is_link(v) and v[0] in api]
            depths[node_id] = max((depth(s, seen | {node_id}) + 1 for s in sources if s not in seen), default=0)
        return depths[node_id]

    for node_id in api:
        depth(node_id)
    return depths


def _plain(value):
    """An API value as a widget holds it (lists travel wrapped as ``{"__value__": [...]}``)."""
    return value["__value__"] if isinstance(value, dict) and "__value__" in value else value


def _link_id(link) -> int:
    return link["id"] if isinstance(link, dict) else link[0]


def _link_origin(link):
    return link["origin_id"] if isinstance(link, dict) else link[1]
