"""Running a workflow without a ComfyUI server: the pack's nodes, executed as ComfyUI would.

:func:`run_graph` takes an API-format graph: it checks it the way ComfyUI's ``validate_prompt``
does (required inputs, link types, min/max, combo choices, ``VALIDATE_INPUTS``), then runs only
the nodes that the output nodes need, each once, in dependency order, with the hidden inputs
``prompt``, ``extra_pnginfo`` and ``unique_id`` filled in. Results are dropped as soon as no later
node needs them, so a model is freed after its last use. ComfyUI core output nodes that only
preview or save images (:data:`SKIPPED_CORE_OUTPUTS`) are skipped with a note; any other core
node makes the run fail before anything starts, since only ComfyUI can run it; Load Image runs from
the runner's own copy (:mod:`.load_image`).

The command line of ``run_workflow.py`` is :mod:`.cli`.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..nodes import comfy_env
from ..nodes.widget_checks import value_problem
from . import ui_form, values
from .load_image import HEADLESS_CORE_NODES
from .workflow_format import CORE_NODES, WorkflowError, is_link, node_inputs

log = logging.getLogger("HunyuanVideo")

SKIPPED_CORE_OUTPUTS = tuple(name for name in CORE_NODES if name not in HEADLESS_CORE_NODES)


@dataclass
class RunResult:
    """What a run produced: each output node's UI dict, the files written and the skipped nodes."""

    outputs: dict[str, dict] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def set_inputs(api: dict[str, dict], assignments: list[str], node_classes: Mapping[str, type]) -> None:
    """Apply ``NODE.INPUT=VALUE`` assignments; NODE is a node id, a title, or a class type.

    STRING and combo inputs take VALUE as written, BOOLEAN inputs their usual spellings
    (``false``/``no``/``off``/``0``, ``true``/``yes``/``on``/``1``), other inputs parse it as JSON
    (``30``, ``6.5``), falling back to the text.
    """
    for assignment in assignments:
        target, sep, text = assignment.partition("=")
        node_ref, dot, name = target.rpartition(".")
        if not (sep and dot and node_ref and name):
            raise WorkflowError(f"--set {assignment!r}: expected NODE.INPUT=VALUE, e.g. --set 3.steps=20")
        node_id = _find_node(api, node_ref)
        class_type = api[node_id]["class_type"]
        spec = _input_spec(node_inputs(class_type, node_classes)[0], name)
        if spec is None:
            raise WorkflowError(f"--set {assignment!r}: node {node_id} ({class_type}) has no input {name!r}.")
        api[node_id].setdefault("inputs", {})[name] = _parsed(assignment, text, spec)


def _parsed(assignment: str, text: str, spec: tuple):
    try:
        return values.parse_text(text, spec[0])
    except values.ValueProblem as error:
        raise WorkflowError(f"--set {assignment!r}: {error}.") from None


def _find_node(api: dict[str, dict], ref: str) -> str:
    if ref in api:
        return ref
    titles = {i: n.get("_meta", {}).get("title") for i, n in api.items()}
    types = {i: n["class_type"] for i, n in api.items()}
    for what, names in (("title", titles), ("type", types)):
        found = [i for i, name in names.items() if name == ref]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise WorkflowError(f"{len(found)} nodes have the {what} {ref!r} (ids {', '.join(found)}); use an id.")
    raise WorkflowError(f"no node with id, title or type {ref!r}; the workflow has ids {', '.join(api)}.")


def _input_spec(input_types: dict, name: str) -> tuple | None:
    for section in ("required", "optional"):
        if name in (input_types.get(section) or {}):
            return input_types[section][name]
    return None


# ---------------------------------------------------------------------------------------------
# Checking


def execution_order(api: dict[str, dict], node_classes: Mapping[str, type]) -> tuple[list[str], list[str]]:
    """The nodes to run, dependencies first, and the core output nodes skipped."""
    foreign = [i for i, n in api.items() if n["class_type"] not in node_classes]
    skipped = [i for i in foreign if api[i]["class_type"] in SKIPPED_CORE_OUTPUTS]
    unknown = [i for i in foreign if i not in skipped]
    if unknown:
        raise WorkflowError("; ".join(_unknown_message(i, api[i]["class_type"]) for i in unknown))
    outputs = [
        i for i, n in api.items() if i not in skipped and getattr(node_classes[n["class_type"]], "OUTPUT_NODE", False)
    ]
    if not outputs:
        raise WorkflowError(
            "the workflow has no output node this runner can execute (such as 'HunyuanVideo Save Video'), "
            "so nothing would be written."
        )
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(node_id: str, path: tuple[str, ...]) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "active":
            raise WorkflowError(f"the workflow has a cycle: {' -> '.join(path + (node_id,))}")
        state[node_id] = "active"
        for value in api[node_id].get("inputs", {}).values():
            if is_link(value):
                if value[0] not in api:
                    raise WorkflowError(f"node {node_id} links to node {value[0]}, which is not in the workflow.")
                visit(value[0], path + (node_id,))
        state[node_id] = "done"
        order.append(node_id)

    for node_id in outputs:
        visit(node_id, ())
    return order, skipped


def _unknown_message(node_id: str, class_type: str) -> str:
    return (
        f"node {node_id} is a {class_type!r}, which is not one of this pack's nodes. The headless runner "
        f"runs only the pack's nodes (and skips ComfyUI's image save and preview nodes); run this workflow "
        f"inside ComfyUI, with the node packs it needs installed"
    )


def check_graph(api: dict[str, dict], order: list[str], node_classes: Mapping[str, type]) -> None:
    """Raise WorkflowError listing every problem ComfyUI's validation would report for ``order``."""
    problems = []
    for node_id in order:
        node = api[node_id]
        cls = node_classes[node["class_type"]]
        where = f"node {node_id} ({node['class_type']})"

        def warn(message: str, where: str = where) -> None:
            log.warning("%s: %s", where, message)

        for message in _node_problems(api, node, cls, node_classes, warn):
            problems += [f"{where}: {line.removeprefix('- ')}" for line in message.splitlines() if line.strip()]
    if problems:
        raise WorkflowError("the workflow does not validate:\n  " + "\n  ".join(problems))


def _node_problems(api, node, cls, node_classes, warn: Callable[[str], None]) -> list[str]:
    input_types = cls.INPUT_TYPES()
    inputs = node.setdefault("inputs", {})
    validator = getattr(cls, "VALIDATE_INPUTS", None)
    parameters = inspect.signature(validator).parameters if validator else {}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    checked_by_node = set(inputs) if takes_all else set(parameters)
    problems = {}
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            if name not in inputs:
                if section == "required":
                    problems[name] = f"required input {name!r} is missing"
                continue
            value = inputs[name]
            if is_link(value):
                problem = _link_problem(api, value, spec[0], node_classes, check_type="input_types" not in parameters)
            else:
                problem = _value_problem(inputs, name, spec, name in checked_by_node, warn)
            if problem:
                problems[name] = f"{name}: {problem}"
    required = {
        n for n, p in parameters.items() if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    if validator and not (set(problems) & checked_by_node) and required <= set(inputs) | {"input_types"}:
        problems["VALIDATE_INPUTS"] = _custom_validation(validator, api, inputs, checked_by_node, node_classes)
    return [problem for problem in problems.values() if problem]


def _custom_validation(validator, api, inputs, names, node_classes) -> str | None:
    # As in ComfyUI: the node's VALIDATE_INPUTS gets the inputs it names; linked ones are still
    # unknown before the run and come as None; "input_types" gets the linked inputs' types.
    arguments = {n: None if is_link(inputs[n]) else inputs[n] for n in names if n in inputs}
    if "input_types" in names:
        arguments["input_types"] = {
            n: node_classes[api[v[0]]["class_type"]].RETURN_TYPES[v[1]] for n, v in inputs.items() if is_link(v)
        }
    try:
        verdict = validator(**arguments)
    except Exception as error:
        return f"validation raised {type(error).__name__}: {error}"
    return None if verdict is True else str(verdict)


def _link_problem(api, link, wanted: str, node_classes, check_type: bool) -> str | None:
    source_id, slot = link
    source = api[source_id]["class_type"]
    returns = getattr(node_classes.get(source), "RETURN_TYPES", ())
    if slot >= len(returns):
        return f"links to output {slot} of node {source_id} ({source}), which has {len(returns)} outputs"
    got = returns[slot]
    if check_type and got != wanted and not set(got.split(",")) & set(str(wanted).split(",")):
        return f"node {source_id} ({source}) gives {got}, this input takes {wanted}"
    return None


def _value_problem(inputs: dict, name: str, spec: tuple, skip_ranges: bool, warn: Callable[[str], None]) -> str | None:
    value = inputs[name]
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    try:
        value, warning = values.cast(spec[0], value)
    except values.ValueProblem as error:
        return str(error)
    if warning:
        warn(f"{name}: {warning}")
    inputs[name] = value
    return None if skip_ranges else value_problem(spec, value)


# ---------------------------------------------------------------------------------------------
# Running


def run_graph(
    api: dict[str, dict],
    node_classes: Mapping[str, type] | None = None,
    extra_pnginfo: dict | None = None,
    report: Callable[[str], None] = log.info,
) -> RunResult:
    """Validate and run an API-format graph with the pack's nodes; ``report`` gets progress lines.

    Saved files get ``prompt`` (the graph as run) and ``extra_pnginfo``, whose ``workflow`` is made to
    match the run (:mod:`.ui_form`), so that dragging a file onto ComfyUI's page rebuilds what made it.
    """
    if node_classes is None:
        node_classes = pack_node_classes()
    order, skipped = execution_order(api, node_classes)
    check_graph(api, order, node_classes)
    prompt = json.loads(json.dumps(api))  # the graph as checked, for the files' metadata
    extra_pnginfo = {**(extra_pnginfo or {}), "workflow": _run_workflow(extra_pnginfo, prompt, node_classes)}
    result = RunResult(skipped=skipped)
    for node_id in skipped:
        report(f"skipping node {node_id} ({api[node_id]['class_type']}): a ComfyUI core node, runs only in ComfyUI")
    uses = {i: sum(v[0] == i for n in order for v in api[n]["inputs"].values() if is_link(v)) for i in order}
    values: dict[str, tuple] = {}
    for step, node_id in enumerate(order, 1):
        comfy_env.check_cancel()
        node = api[node_id]
        cls = node_classes[node["class_type"]]
        report(f"[{step}/{len(order)}] node {node_id}: {node.get('_meta', {}).get('title') or node['class_type']}")
        started = time.perf_counter()
        kwargs = _arguments(cls, node, node_id, values, prompt, extra_pnginfo)
        outputs, ui = _split_result(getattr(cls(), cls.FUNCTION)(**kwargs), node["class_type"])
        for value in node["inputs"].values():
            if is_link(value):
                uses[value[0]] -= 1
                if uses[value[0]] == 0:
                    del values[value[0]]
        if uses[node_id]:
            values[node_id] = outputs
        if ui is not None:
            result.outputs[node_id] = ui
            result.files.extend(_saved_files(ui))
        report(f"        done in {time.perf_counter() - started:.1f} s")
    return result


def _run_workflow(extra_pnginfo: dict | None, api: dict[str, dict], node_classes) -> dict:
    """The UI workflow saved files carry: the given one with the values that ran, or one built from ``api``."""
    workflow = (extra_pnginfo or {}).get("workflow")
    if isinstance(workflow, dict):
        return ui_form.with_run_values(workflow, api, node_classes)
    return ui_form.ui_from_api(api, node_classes)


def _arguments(cls, node, node_id, values, prompt, extra_pnginfo) -> dict:
    kwargs = {}
    for name, value in node["inputs"].items():
        kwargs[name] = values[value[0]][value[1]] if is_link(value) else value
    hidden = cls.INPUT_TYPES().get("hidden") or {}
    filled = {"PROMPT": prompt, "EXTRA_PNGINFO": extra_pnginfo, "UNIQUE_ID": node_id}
    for name, kind in hidden.items():
        if kind in filled:
            kwargs[name] = filled[kind]
    return kwargs


def _split_result(returned, class_type: str) -> tuple[tuple, dict | None]:
    if isinstance(returned, dict):
        if "expand" in returned:
            raise WorkflowError(f"{class_type} expands into a subgraph, which the headless runner cannot run.")
        return tuple(returned.get("result") or ()), returned.get("ui")
    return tuple(returned or ()), None


def _saved_files(ui: dict) -> list[Path]:
    files = []
    for entries in ui.values():
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict) and entry.get("type") == "output" and "filename" in entry:
                files.append(comfy_env.output_directory() / entry.get("subfolder", "") / entry["filename"])
    return files


def pack_node_classes() -> dict[str, type]:
    """The node types a headless run knows: the pack's nodes and the runner's own Load Image."""
    from ..nodes import NODE_CLASS_MAPPINGS

    return {**NODE_CLASS_MAPPINGS, **HEADLESS_CORE_NODES}
