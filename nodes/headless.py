"""Running a workflow without a ComfyUI server: the pack's nodes, executed as ComfyUI would.

:func:`run_graph` takes an API-format graph: it checks it the way ComfyUI's ``validate_prompt``
does (required inputs, link types, min/max, combo choices, ``VALIDATE_INPUTS``), then runs only
the nodes that the output nodes need, each once, in dependency order, with the hidden inputs
``prompt``, ``extra_pnginfo`` and ``unique_id`` filled in. Results are dropped as soon as no later
node needs them, so a model is freed after its last use. ComfyUI core output nodes that only
preview or save images (:data:`SKIPPED_CORE_OUTPUTS`) are skipped with a note; any other core
node makes the run fail before anything starts, since only ComfyUI can run it; Load Image runs from
the runner's own copy (:mod:`.load_image`).

:func:`main` is the command line of ``run_workflow.py``. When none of the model files a workflow
names are present, it runs a CPU demo on tiny stand-ins of them instead (:mod:`.demo_models`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import comfy_env, demo_models
from .load_image import HEADLESS_CORE_NODES
from .widget_checks import value_problem
from .workflow_format import CORE_NODES, WorkflowError, is_link, load_workflow, node_inputs

log = logging.getLogger("HunyuanVideo")

SKIPPED_CORE_OUTPUTS = tuple(name for name in CORE_NODES if name not in HEADLESS_CORE_NODES)
_CASTS = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


@dataclass
class RunResult:
    """What a run produced: each output node's UI dict, the files written and the skipped nodes."""

    outputs: dict[str, dict] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def set_inputs(api: dict[str, dict], assignments: list[str], node_classes: Mapping[str, type]) -> None:
    """Apply ``NODE.INPUT=VALUE`` assignments; NODE is a node id, a title, or a class type.

    STRING and combo inputs take VALUE as written; other inputs parse it as JSON (``30``,
    ``6.5``, ``true``), falling back to the text.
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
        api[node_id].setdefault("inputs", {})[name] = _parse_value(text, spec)


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


def _parse_value(text: str, spec: tuple):
    if spec[0] == "STRING" or isinstance(spec[0], list) or spec[0] == "COMBO":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


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
        for message in _node_problems(api, node, cls, node_classes):
            problems.append(f"{where}: {message}")
    if problems:
        raise WorkflowError("the workflow does not validate:\n  " + "\n  ".join(problems))


def _node_problems(api, node, cls, node_classes) -> list[str]:
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
                problem = _value_problem(inputs, name, spec, skip_ranges=name in checked_by_node)
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


def _value_problem(inputs: dict, name: str, spec: tuple, skip_ranges: bool) -> str | None:
    kind = spec[0]
    value = inputs[name]
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if isinstance(kind, str) and kind in _CASTS:
        try:
            value = _CASTS[kind](value)
        except (TypeError, ValueError):
            return f"{value!r} is not a valid {kind}"
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
    """Validate and run an API-format graph with the pack's nodes; ``report`` gets progress lines."""
    if node_classes is None:
        from . import NODE_CLASS_MAPPINGS

        node_classes = {**NODE_CLASS_MAPPINGS, **HEADLESS_CORE_NODES}
    order, skipped = execution_order(api, node_classes)
    check_graph(api, order, node_classes)
    prompt = json.loads(json.dumps(api))  # the graph as checked, for the files' metadata
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
        outputs, ui = _split_result(getattr(cls(), cls.FUNCTION)(**kwargs), cls)
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


def _split_result(returned, cls) -> tuple[tuple, dict | None]:
    if isinstance(returned, dict):
        if "expand" in returned:
            raise WorkflowError(f"{cls.__name__} expands into a subgraph, which the headless runner cannot run.")
        return tuple(returned.get("result") or ()), returned.get("ui")
    return tuple(returned or ()), None


def _saved_files(ui: dict) -> list[Path]:
    files = []
    for entries in ui.values():
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict) and entry.get("type") == "output" and "filename" in entry:
                files.append(comfy_env.output_directory() / entry.get("subfolder", "") / entry["filename"])
    return files


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None, node_classes: Mapping[str, type] | None = None) -> int:
    """``run_workflow.py``: run a workflow file; returns the exit status (0 ok, 1 failed, 2 bad workflow, 130 cancelled)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if node_classes is None:
        from . import NODE_CLASS_MAPPINGS

        node_classes = {**NODE_CLASS_MAPPINGS, **HEADLESS_CORE_NODES}
    comfy_env.configure(models_dir=args.models_dir, output_dir=args.output_dir)
    try:
        workflow = load_workflow(args.workflow, node_classes)
        set_inputs(workflow.api, args.set, node_classes)
        demo = None if args.no_demo else demo_models.demo_plan(workflow.api)
        with _demo_models_folder(demo) as demo_folder:
            if demo is not None:
                _start_demo(demo, demo_folder, workflow.api, args.set, node_classes)
            log.info(
                "%s (nodes: %d); models from %s, output to %s",
                args.workflow,
                len(workflow.api),
                comfy_env.models_directory(),
                comfy_env.output_directory(),
            )
            started = time.perf_counter()
            with _cancel_on_ctrl_c():
                result = run_graph(workflow.api, node_classes, {"workflow": workflow.ui} if workflow.ui else None)
    except WorkflowError as error:
        log.error("error: %s", error)
        return 2
    except (comfy_env.Cancelled, KeyboardInterrupt):
        log.error("cancelled; no partial files were kept.")
        return 130
    except Exception as error:
        log.error("failed: %s: %s", type(error).__name__, error, exc_info=args.traceback)
        return 1
    log.info("finished in %.1f s", time.perf_counter() - started)
    for path in result.files:
        log.info("wrote %s (%s)", path, _size(path))
    if demo is not None:
        log.warning("that was a demo with random weights: the video is noise. %s", _real_weights_hint(demo))
    return 0


@contextmanager
def _demo_models_folder(demo: demo_models.DemoPlan | None):
    if demo is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="hunyuanvideo_demo_models_") as folder:
        yield Path(folder)


def _start_demo(demo, folder: Path, api: dict[str, dict], user_sets: list[str], node_classes) -> None:
    """Write the tiny models, point the runner at them and shrink the video (the user's --set still wins)."""
    log.warning(
        "none of the model files this workflow names are in %s, so this is a CPU demo: tiny random-weight "
        "checkpoints in the same formats go to a temporary folder and the video is shrunk; the result is noise. %s",
        comfy_env.models_directory(),
        _real_weights_hint(demo),
    )
    log.warning("demo settings: %s", " ".join(f"--set {o}" for o in demo.overrides))
    started = time.perf_counter()
    demo_models.write_demo_models(folder, demo.files)
    log.info("wrote %d tiny model files to %s in %.1f s", len(demo.files), folder, time.perf_counter() - started)
    comfy_env.configure(models_dir=folder)
    set_inputs(api, demo.overrides, node_classes)
    set_inputs(api, user_sets, node_classes)


def _real_weights_hint(demo) -> str:
    files = ", ".join(f"{kind}/{name}" for kind, name in demo.files)
    return f"For real videos, put the real files in the models folder (--models-dir, see the README): {files}."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_workflow.py",
        description="Run a ComfyUI workflow (UI or API format) with the HunyuanVideo pack's nodes, without ComfyUI.",
    )
    parser.add_argument("workflow", type=Path, help="workflow JSON file, as saved or exported (API) by ComfyUI")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="folder laid out like ComfyUI's models/ (diffusion_models, text_encoders, vae, ...); "
        "default: $HUNYUANVIDEO_MODELS_DIR or ./models",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="where videos are written; default: $HUNYUANVIDEO_OUTPUT_DIR or ./output",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="change an input before running; NODE is a node id, title or type (repeatable): "
        "--set 3.steps=20 --set 'HunyuanVideo Text Encode.prompt=a cat'",
    )
    parser.add_argument(
        "--no-demo",
        action="store_true",
        help="when none of the workflow's model files are present, fail instead of running a CPU demo with tiny "
        "random weights",
    )
    parser.add_argument("--traceback", action="store_true", help="print the full traceback when a node fails")
    return parser


@contextmanager
def _cancel_on_ctrl_c():
    """First Ctrl-C cancels at the next progress update (cleanly); a second one stops at once."""

    def first(signum, frame):
        log.warning("cancelling at the next progress update; press Ctrl-C again to stop at once.")
        comfy_env.request_cancel()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _size(path: Path) -> str:
    size = path.stat().st_size if path.exists() else 0
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
