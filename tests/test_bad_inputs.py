"""The bad-input table: what a new user tried with the headless runner, and what it answers.

Each row runs ``run_workflow.py``'s command line on the README's own workflow with the tiny demo models,
and checks the exit status and the words of the answer. Refusals must come before anything loads
(no node runs). Rows are only ever added: a row that changes means a promise to users changed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from conftest import PACK_DIR
from hunyuanvideo_pack.headless.cli import main
from hunyuanvideo_pack.hunyuan_model.video_file import write_video

WORKFLOW = PACK_DIR / "workflows" / "text_to_video_api.json"
STOP = ["--set", "HunyuanVideo Save Video.crf=99"]  # a refusal after the row's point, so nothing runs


@dataclass(frozen=True)
class Row:
    tried: str
    args: list[str]
    status: int
    answer: list[str]  # fragments the output must hold
    workflow: str = "api"  # "api", or a maker in WORKFLOW_FILES
    not_in_answer: list[str] = field(default_factory=list)


WORKFLOW_FILES = {
    "binary": lambda path: path.write_bytes(bytes(range(256)) * 4),
    "mp4_without_workflow": lambda path: write_video(torch.zeros(1, 16, 16, 3), path),
    "png_without_workflow": lambda path: path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x00IEND\xaeB`\x82"),
    "truncated_json": lambda path: path.write_text('{"1": {"class_type": '),
    "utf16_text": lambda path: path.write_text(WORKFLOW.read_text(), encoding="utf-16"),
}

ROWS = [
    Row("a boolean spelled 'nah'", ["--set", "5.offload_model=nah"], 2, ["'nah' is not a boolean", "false/no/off/0 or true/yes/on/1"]),
    Row("a boolean spelled 'maybe' for a text-encoder switch", ["--set", "3.apply_final_norm=maybe"], 2, ["is not a boolean"]),
    Row("8192x8192 (both too large)", ["--set", "4.width=8192", "--set", "4.height=8192"], 2, ["width 8192 is above the maximum 4096", "height 8192 is above the maximum 4096"]),
    Row("a size and frame count the model cannot make", ["--set", "4.width=100", "--set", "4.height=100", "--set", "4.frames=10"], 2, ["width must be a positive multiple of 16", "height must be a positive multiple of 16", "frames must be of the form 4k+1"]),
    Row("manual tiling, both axes wrong", ["--set", "7.tiling=manual", "--set", "7.tile_size=100", "--set", "7.temporal_size=10"], 2, ["tile_size=100 and overlap=64 must be multiples of 8", "temporal_size=10 and temporal_overlap=16 must be multiples of 4"]),
    Row("several nodes wrong at once", ["--set", "4.frames=10", "--set", "8.crf=99", "--set", "5.steps=0"], 2, ["node 4 (HunyuanVideoEmptyLatent): frames", "node 8 (HunyuanVideoSaveVideo): crf 99", "node 5 (HunyuanVideoSampler): steps: 0 is below the minimum 1"]),
    Row("an INT given as 25.5", ["--set", "4.frames=25.5", *STOP], 2, ["frames: 25.5 is not a whole number; it runs as 25 (ComfyUI truncates the same way)"]),
    Row("a prefix that leaves the output folder", ["--set", "8.filename_prefix=../../escape"], 2, ["points outside the output folder"]),
    Row("an output folder that is a file", ["--output-dir", "{file}"], 2, ["is a file, but filename_prefix 'HunyuanVideo/text_to_video' needs a folder there"]),
    Row("a prefix whose folder is a file", ["--set", "8.filename_prefix={file_name}/clip"], 2, ["is a file, but filename_prefix"]),
    Row("a binary file as the workflow", [], 2, ["is not a workflow: it is a binary file, not JSON text", "workflow.bin"], workflow="binary"),
    Row("an mp4 without a workflow as the workflow", [], 2, ["is a video without a workflow in it", "workflow.bin"], workflow="mp4_without_workflow"),
    Row("a PNG without a workflow", [], 2, ["is a PNG image without a workflow in it"], workflow="png_without_workflow"),
    Row("a truncated JSON workflow", [], 2, ["cannot read workflow", "workflow.bin"], workflow="truncated_json"),
    Row("a workflow in UTF-16", [], 2, ["workflow.bin", "binary file"], workflow="utf16_text"),
    Row("a workflow file that does not exist", ["{missing}"], 2, ["cannot read workflow", "nope.json"]),
    Row("a --models-dir that does not exist", ["--models-dir", "{tmp}/no_such_models"], 2, ["the models folder --models-dir", "no_such_models does not exist", "../../models"], not_in_answer=["demo"]),
    Row("a --models-dir that is a file", ["--models-dir", "{file}"], 2, ["is a file, not a folder"]),
    Row("an existing --models-dir without the files", ["--models-dir", "{tmp}"], 2, ["'hunyuan_video_t2v_720p_bf16.safetensors' is not one of the choices"], not_in_answer=["CPU demo"]),
    Row("--set on a node that does not exist", ["--set", "99.steps=3"], 2, ["no node with id, title or type '99'"]),
    Row("--set on an input the node lacks", ["--set", "5.quality=3"], 2, ["has no input 'quality'"]),
    Row("--set without a value", ["--set", "5.steps"], 2, ["expected NODE.INPUT=VALUE"]),
]  # fmt: skip
LEAST_ROWS = 22  # the table only grows


def test_the_table_only_grows():
    assert len(ROWS) >= LEAST_ROWS
    assert len({row.tried for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.tried)
def test_bad_input(row, demo_models_dir, tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("HUNYUANVIDEO_MODELS_DIR", raising=False)
    (tmp_path / "a_file").write_text("in the way")
    workflow = tmp_path / "workflow.bin"
    if row.workflow == "api":
        workflow.write_text(WORKFLOW.read_text())
    else:
        WORKFLOW_FILES[row.workflow](workflow)
    fill = {
        "tmp": str(tmp_path),
        "file": str(tmp_path / "a_file"),
        "file_name": "a_file",
        "missing": str(tmp_path / "nope.json"),
    }
    args = [arg.format(**fill) for arg in row.args]
    if row.args[:1] == ["{missing}"]:
        workflow, args = Path(args[0]), args[1:]
    if "--models-dir" not in args:
        args += ["--models-dir", str(demo_models_dir)]
    if "--output-dir" not in args:
        args += ["--output-dir", str(tmp_path / "out")]
    if "filename_prefix=" in " ".join(args):
        (tmp_path / "out").mkdir(exist_ok=True)
        (tmp_path / "out" / "a_file").write_text("in the way")
    with caplog.at_level(logging.INFO, logger="HunyuanVideo"):
        status = main([str(workflow), *args])
    text = caplog.text
    assert status == row.status, text
    for fragment in row.answer:
        assert fragment in text, (fragment, text)
    for fragment in row.not_in_answer:
        assert fragment not in text, (fragment, text)
    assert "Traceback" not in text
    assert "] node " not in text  # refused before any node ran
    assert json.loads(WORKFLOW.read_text())  # the shipped workflow itself was not touched
