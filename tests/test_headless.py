"""The headless runner: ComfyUI's execution rules on API graphs, --set overrides, the command line."""

import gc
import io
import json
import logging
import shutil
import signal
import subprocess
import sys
import weakref

import av
import pytest
import torch

from conftest import PACK_DIR
from hunyuanvideo_pack.headless.cli import _cancel_on_ctrl_c, main
from hunyuanvideo_pack.headless.runner import run_graph, set_inputs
from hunyuanvideo_pack.headless.workflow_format import WorkflowError, ui_to_api
from hunyuanvideo_pack.hunyuan_model import video_frames
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS, comfy_env

CALLS = []


class ToyDecode:
    """Test stand-in for the VAE decode: a latent becomes frames of the matching video size."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "shade": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}}

    def decode(self, latent, shade):
        CALLS.append("decode")
        b, c, t, h, w = latent["samples"].shape
        return (torch.full((video_frames(t), h * 8, w * 8, 3), shade),)


class ToyToken:
    pass


class ToySource:
    RETURN_TYPES = ("TOKEN",)
    FUNCTION = "make"
    alive: weakref.ref | None = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def make(self):
        token = ToyToken()
        ToySource.alive = weakref.ref(token)
        CALLS.append("source")
        return (token,)


class ToyUse:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "use"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"token": ("TOKEN",)}, "optional": {"count": ("INT", {"default": 1, "min": 0, "max": 3})}}

    @classmethod
    def VALIDATE_INPUTS(cls, count):
        CALLS.append(("validate", count))
        return True if count is None or count < 9 else "count must stay below 9"

    def use(self, token, count=1):
        CALLS.append("use")
        return ("used",)


class ToyCheck:
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "check"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True})}, "hidden": {"node": "UNIQUE_ID"}}

    def check(self, text, node):
        gc.collect()
        CALLS.append(("token freed before a later node", ToySource.alive() is None, node))
        return {"ui": {"text": [text]}}


class ToyCancel:
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",)}}

    def run(self, latent):
        comfy_env.request_cancel()
        with comfy_env.Progress(2) as progress:
            progress.update(1)


class ToyFail(ToyCancel):
    def run(self, latent):
        raise RuntimeError("the toy broke")


CLASSES = {
    **NODE_CLASS_MAPPINGS,
    **{cls.__name__: cls for cls in (ToyDecode, ToySource, ToyUse, ToyCheck, ToyCancel, ToyFail)},
}


@pytest.fixture(autouse=True)
def fresh_calls():
    CALLS.clear()


def video_graph(prefix="run"):
    return {
        "1": {
            "class_type": "HunyuanVideoEmptyLatent",
            "inputs": {"width": 64, "height": 32, "frames": 9, "batch": 1},
            "_meta": {"title": "Size"},
        },
        "2": {"class_type": "ToyDecode", "inputs": {"latent": ["1", 0], "shade": 0.25}},
        "3": {
            "class_type": "HunyuanVideoSaveVideo",
            "inputs": {"images": ["2", 0], "filename_prefix": prefix, "format": "mp4", "fps": 12, "crf": 19},
            "_meta": {"title": "Save"},
        },
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def test_a_latent_to_video_graph_runs_and_writes_the_video_with_its_prompt(models_dir):
    lines = []
    graph = video_graph()
    result = run_graph(graph, CLASSES, extra_pnginfo={"workflow": {"nodes": []}}, report=lines.append)

    output = comfy_env.output_directory()
    assert result.files == [output / "run_00001_.mp4"]
    assert result.skipped == ["4"]
    assert result.outputs == {
        "3": {"images": [{"filename": "run_00001_.mp4", "subfolder": "", "type": "output"}], "animated": (True,)}
    }
    assert CALLS == ["decode"]  # once, though two nodes use its output
    with av.open(str(result.files[0])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert container.streams.video[0].average_rate == 12
        assert json.loads(container.metadata["prompt"]) == graph
        assert json.loads(container.metadata["workflow"]) == {"nodes": []}
    assert len(frames) == 9 and frames[0].shape == (32, 64, 3)
    assert abs(int(frames[4][10, 10, 0]) - 64) <= 2  # shade 0.25
    assert lines[0].startswith("skipping node 4 (PreviewImage)")
    assert lines[1:4:2] == ["[1/3] node 1: Size", "[2/3] node 2: ToyDecode"]


def test_only_nodes_that_outputs_need_run_and_results_are_freed_after_last_use(models_dir):
    graph = {
        "1": {"class_type": "ToySource", "inputs": {}},
        "2": {"class_type": "ToyUse", "inputs": {"token": ["1", 0], "count": 2}},
        "3": {"class_type": "ToyCheck", "inputs": {"text": ["2", 0]}},
        "4": {"class_type": "ToyDecode", "inputs": {"latent": ["1", 0], "shade": 0.5}},  # feeds no output
    }
    result = run_graph(graph, CLASSES, report=lambda line: None)
    assert CALLS == [("validate", 2), "source", "use", ("token freed before a later node", True, "3")]
    assert result.outputs == {"3": {"text": ["used"]}} and result.files == []


def test_validation_reports_every_problem_before_anything_runs(models_dir):
    graph = video_graph()
    graph["1"]["inputs"]["frames"] = 10
    graph["2"]["inputs"]["shade"] = 2.0
    graph["3"]["inputs"]["format"] = "avi"  # checked by the node's VALIDATE_INPUTS, which names it
    del graph["3"]["inputs"]["fps"]
    graph["5"] = {"class_type": "ToyCheck", "inputs": {"text": ["1", 0]}}
    with pytest.raises(WorkflowError) as error:
        run_graph(graph, CLASSES)
    message = str(error.value)
    for expected in (
        "node 1 (HunyuanVideoEmptyLatent): frames must be of the form 4k+1",
        "node 2 (ToyDecode): shade: 2.0 is above the maximum 1.0",
        "node 3 (HunyuanVideoSaveVideo): required input 'fps' is missing",
        "node 3 (HunyuanVideoSaveVideo): format 'avi' is not one of the choices: 'mp4', 'webm'",
        "node 5 (ToyCheck): text: node 1 (HunyuanVideoEmptyLatent) gives LATENT, this input takes STRING",
    ):
        assert expected in message
    assert CALLS == []


def test_validate_inputs_gets_none_for_linked_inputs_and_replaces_range_checks(models_dir):
    graph = {
        "1": {"class_type": "ToySource", "inputs": {}},
        "2": {"class_type": "ToyUse", "inputs": {"token": ["1", 0], "count": 7}},  # above max 3, yet allowed
        "3": {"class_type": "ToyCheck", "inputs": {"text": ["2", 0]}},
    }
    run_graph(graph, CLASSES, report=lambda line: None)
    assert CALLS[0] == ("validate", 7)
    graph["2"]["inputs"]["count"] = 9
    with pytest.raises(WorkflowError, match="node 2 \\(ToyUse\\): count must stay below 9"):
        run_graph(graph, CLASSES)


def test_graphs_needing_comfyui_or_broken_graphs_fail_clearly():
    graph = video_graph() | {"5": {"class_type": "KSampler", "inputs": {}}}
    with pytest.raises(WorkflowError, match="node 5 is a 'KSampler', which is not one of this pack's nodes"):
        run_graph(graph, CLASSES)
    cycle = {
        "1": {"class_type": "ToyUse", "inputs": {"token": ["2", 0]}},
        "2": {"class_type": "ToyUse", "inputs": {"token": ["1", 0]}},
        "3": {"class_type": "ToyCheck", "inputs": {"text": ["1", 0]}},
    }
    with pytest.raises(WorkflowError, match="cycle: 3 -> 1 -> 2 -> 1"):
        run_graph(cycle, CLASSES)
    with pytest.raises(WorkflowError, match="no output node"):
        run_graph({"1": video_graph()["1"]}, CLASSES)


def test_set_finds_nodes_by_id_title_or_type_and_parses_values():
    graph = video_graph()
    set_inputs(graph, ["1.frames=17", "Save.filename_prefix=42", "ToyDecode.shade=0.75", "Save.fps=[1]"], CLASSES)
    assert graph["1"]["inputs"]["frames"] == 17
    assert graph["3"]["inputs"]["filename_prefix"] == "42"  # STRING inputs take the text as written
    assert graph["2"]["inputs"]["shade"] == 0.75
    assert graph["3"]["inputs"]["fps"] == [1]  # JSON, as typed: validation will refuse it
    for assignment, message in [
        ("Save.quality=3", "node 3 \\(HunyuanVideoSaveVideo\\) has no input 'quality'"),
        ("Nope.width=3", "no node with id, title or type 'Nope'"),
        ("frames=3", "expected NODE.INPUT=VALUE"),
    ]:
        with pytest.raises(WorkflowError, match=message):
            set_inputs(graph, [assignment], CLASSES)
    graph["5"] = dict(graph["3"])
    with pytest.raises(WorkflowError, match="2 nodes have the title 'Save' \\(ids 3, 5\\); use an id"):
        set_inputs(graph, ["Save.crf=20"], CLASSES)


def ui_workflow():
    """The video graph as the ComfyUI page saves it."""
    return {
        "nodes": [
            {"id": 1, "type": "HunyuanVideoEmptyLatent", "widgets_values": [64, 32, 9, 1], "outputs": [], "inputs": []},
            {"id": 2, "type": "ToyDecode", "widgets_values": [0.5], "inputs": [{"name": "latent", "link": 1}]},
            {"id": 3, "type": "HunyuanVideoSaveVideo", "title": "Save", "widgets_values": ["ui", "webm", 24, 30]},
        ],
        "links": [[1, 1, 0, 2, 0, "LATENT"], [2, 2, 0, 3, 0, "IMAGE"]],
    }


def test_the_command_line_runs_a_ui_workflow_with_overrides(tmp_path, models_dir, caplog):
    workflow = ui_workflow()
    workflow["nodes"][2]["inputs"] = [{"name": "images", "link": 2}]
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    output = tmp_path / "videos"
    argv = [str(tmp_path / "wf.json"), "--models-dir", str(models_dir), "--output-dir", str(output)]
    with caplog.at_level("INFO", logger="HunyuanVideo"):
        status = main([*argv, "--set", "Save.format=mp4", "--set", "1.frames=5"], node_classes=CLASSES)

    assert status == 0
    saved = output / "ui_00001_.mp4"
    assert f"wrote {saved}" in caplog.text
    with av.open(str(saved)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
        stored, prompt = json.loads(container.metadata["workflow"]), json.loads(container.metadata["prompt"])
    assert prompt["1"]["inputs"]["frames"] == 5
    # The stored workflow is the one that ran, overrides included: dragged onto ComfyUI it makes this video.
    assert [node["widgets_values"] for node in stored["nodes"]] == [[64, 32, 5, 1], [0.5], ["ui", "mp4", 24, 30]]
    assert ui_to_api(stored, CLASSES) == prompt
    assert stored["links"] == workflow["links"] and json.loads((tmp_path / "wf.json").read_text()) == workflow


def test_the_command_line_exit_codes(tmp_path, models_dir, caplog):
    def run(graph):
        (tmp_path / "wf.json").write_text(json.dumps(graph))
        return main([str(tmp_path / "wf.json"), "--output-dir", str(tmp_path / "out")], node_classes=CLASSES)

    latent = video_graph()["1"]
    assert run({"1": latent, "2": {"class_type": "ToyCancel", "inputs": {"latent": ["1", 0]}}}) == 130
    assert "cancelled" in caplog.text
    assert run({"1": latent, "2": {"class_type": "ToyFail", "inputs": {"latent": ["1", 0]}}}) == 1
    assert "failed: RuntimeError: the toy broke" in caplog.text
    assert run({"1": latent}) == 2


def test_the_first_ctrl_c_asks_for_a_clean_cancel():
    with _cancel_on_ctrl_c():
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(comfy_env.Cancelled):
            comfy_env.check_cancel()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_script_runs_from_a_pack_folder_of_any_name(tmp_path):
    pack = tmp_path / "ComfyUI-HunyuanVideo Desktop"
    shutil.copytree(PACK_DIR, pack, ignore=shutil.ignore_patterns(".git", "tests", "__pycache__", "*.md"))
    graph = {"1": video_graph()["1"], "2": {"class_type": "HunyuanVideoSaveVideo", "inputs": {"images": ["1", 0]}}}
    (tmp_path / "wf.json").write_text(json.dumps(graph))
    result = subprocess.run(
        [sys.executable, str(pack / "run_workflow.py"), str(tmp_path / "wf.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "node 2 (HunyuanVideoSaveVideo): images: node 1 (HunyuanVideoEmptyLatent) gives LATENT" in result.stdout
    assert "required input 'filename_prefix' is missing" in result.stdout


class ToySwitch:
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"flag": ("BOOLEAN", {"default": True})}}

    def run(self, flag):
        CALLS.append(flag)
        return {}


@pytest.mark.parametrize(
    "text, value",
    [(t, False) for t in ("false", "False", "FALSE", "no", "No", "off", "OFF", "0")]
    + [(t, True) for t in ("true", "True", "yes", "YES", "on", "On", "1")],
)
def test_booleans_take_the_usual_spellings_in_any_case(text, value, models_dir):
    graph = {"1": {"class_type": "ToySwitch", "inputs": {"flag": True}}}
    set_inputs(graph, [f"1.flag={text}"], {"ToySwitch": ToySwitch})
    assert graph["1"]["inputs"]["flag"] is value
    graph["1"]["inputs"]["flag"] = text  # the same words in an API workflow file
    run_graph(graph, {"ToySwitch": ToySwitch}, report=lambda line: None)
    assert CALLS == [value]


@pytest.mark.parametrize("text", ["nah", "2", "t", "", "null"])
def test_other_booleans_are_refused_with_the_accepted_words(text, models_dir):
    graph = {"1": {"class_type": "ToySwitch", "inputs": {"flag": True}}}
    with pytest.raises(WorkflowError, match="is not a boolean; use false/no/off/0 or true/yes/on/1"):
        set_inputs(graph, [f"1.flag={text}"], {"ToySwitch": ToySwitch})
    graph["1"]["inputs"]["flag"] = text
    with pytest.raises(WorkflowError, match="flag: .* is not a boolean"):
        run_graph(graph, {"ToySwitch": ToySwitch})


def test_an_int_given_as_a_fraction_runs_truncated_with_a_warning(models_dir, caplog):
    graph = video_graph()
    graph["1"]["inputs"]["frames"] = 9.75
    with caplog.at_level("WARNING", logger="HunyuanVideo"):
        run_graph(graph, CLASSES, report=lambda line: None)
    assert "node 1 (HunyuanVideoEmptyLatent): frames: 9.75 is not a whole number; it runs as 9" in caplog.text
    assert graph["1"]["inputs"]["frames"] == 9


def test_the_start_names_device_and_precision_and_warns_of_real_weights_on_the_cpu(
    demo_models_dir, tmp_path, caplog, monkeypatch
):
    models = shutil.copytree(demo_models_dir, tmp_path / "models")
    dit = models / "diffusion_models" / "hunyuan_video_t2v_720p_bf16.safetensors"
    dit.unlink()
    with open(dit, "wb") as sparse:  # the size of real weights, without the disk space
        sparse.truncate(3 * 2**30)
    monkeypatch.setattr(comfy_env, "compute_device", lambda: torch.device("cpu"))
    workflow = PACK_DIR / "workflows" / "text_to_video_api.json"
    with caplog.at_level("INFO", logger="HunyuanVideo"):
        main([str(workflow), "--models-dir", str(models), "--output-dir", str(tmp_path / "out"), "--set", "8.crf=99"])
    assert "device: cpu (" in caplog.text and f"torch {torch.__version__}" in caplog.text
    assert (
        "precision: DiT weights fp8_e4m3fn_scaled, DiT compute bf16, text encoders fp16, LLM weights fp8_e4m3fn, "
        "VAE bf16" in caplog.text
    )
    assert "hunyuan_video_t2v_720p_bf16.safetensors is 3.2 GB of real weights and will run on the CPU" in caplog.text
    assert caplog.text.index("device: cpu") < caplog.text.index("does not validate")  # said before anything


class ToyChatty:
    """Logs while its progress bar is open, as a loader or the block-swap plan does."""

    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        with comfy_env.Progress(4, "toy bar") as progress:
            progress.update(2)
            logging.getLogger("HunyuanVideo").warning("toy says hello")
            progress.update(4)
        return {}


def test_log_lines_never_share_a_line_with_a_progress_bar(tmp_path, models_dir, monkeypatch):
    console = io.StringIO()  # a terminal: bars (stderr) and log lines (stdout) in one stream
    monkeypatch.setattr(sys, "stdout", console)
    monkeypatch.setattr(sys, "stderr", console)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # a fresh process: the runner sets logging up
    (tmp_path / "wf.json").write_text(json.dumps({"1": {"class_type": "ToyChatty", "inputs": {}}}))
    assert main([str(tmp_path / "wf.json"), "--output-dir", str(tmp_path)], node_classes={"ToyChatty": ToyChatty}) == 0
    text = console.getvalue()
    assert "toy bar:  50%" in text
    start = text.index("toy says hello")
    assert text[start - 1] in "\r\n", repr(text[start - 60 : start + 20])  # the bar was cleared first
    assert text[start + len("toy says hello")] == "\n"
