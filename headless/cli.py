"""The command line of ``run_workflow.py``: read a workflow file, apply ``--set``, run it headless.

When the default models folder lacks every model file a workflow names, it runs a CPU demo on tiny
stand-ins of them instead (:mod:`.demo_models`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from ..nodes import comfy_env
from . import console, demo_models, preflight
from .runner import pack_node_classes, run_graph, set_inputs
from .workflow_format import WorkflowError, load_workflow

log = logging.getLogger("HunyuanVideo")


def main(argv: list[str] | None = None, node_classes: Mapping[str, type] | None = None) -> int:
    """``run_workflow.py``: run a workflow file; returns the exit status (0 ok, 1 failed, 2 bad workflow, 130 cancelled)."""
    args = _parser().parse_args(argv)
    console.set_up_logging()
    if node_classes is None:
        node_classes = pack_node_classes()
    comfy_env.configure(models_dir=args.models_dir, output_dir=args.output_dir)
    try:
        chosen_models_dir = _chosen_models_dir(args.models_dir)
        workflow = load_workflow(args.workflow, node_classes)
        set_inputs(workflow.api, args.set, node_classes)
        # The demo stands in only for a first try with the default folder; a folder the user named is
        # meant to hold the real files, and a missing one is the error.
        demo = None if args.no_demo or chosen_models_dir else demo_models.demo_plan(workflow.api)
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
            preflight.announce(workflow.api)
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


def _chosen_models_dir(models_dir: Path | None) -> str | None:
    """The models folder the user named (``--models-dir`` or ``HUNYUANVIDEO_MODELS_DIR``), which must
    exist; None when the default is used."""
    named = ("--models-dir", str(models_dir)) if models_dir is not None else None
    if named is None and os.environ.get("HUNYUANVIDEO_MODELS_DIR"):
        named = ("HUNYUANVIDEO_MODELS_DIR", os.environ["HUNYUANVIDEO_MODELS_DIR"])
    if named is None:
        return None
    option, folder = named
    if not Path(folder).is_dir():
        what = "is a file, not a folder" if Path(folder).exists() else "does not exist"
        raise WorkflowError(
            f"the models folder {option} {folder} {what} (resolved: {Path(folder).resolve()}). Give the folder "
            f"laid out like ComfyUI's models/ (diffusion_models, text_encoders, vae); from a checkout inside "
            f"ComfyUI/custom_nodes that is --models-dir ../../models."
        )
    return folder


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
    """First Ctrl-C cancels at the next check (cleanly: between transformer blocks, tiles or frames); a second
    one stops at once."""

    def first(signum, frame):
        log.warning("cancelling after the current block; press Ctrl-C again to stop at once.")
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
