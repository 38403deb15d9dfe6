"""The pack in a real ComfyUI server, on tiny stand-in models.

Needs a ComfyUI checkout and the Python that runs it: set ``COMFYUI_DIR`` and ``COMFYUI_PYTHON``
(skipped otherwise). Every shared workflow, in both forms, goes through the acceptance harness
``shared/tools/comfy_accept.py`` beside the checkout or one level up (or ``$COMFY_ACCEPT``): it links
the pack into ``custom_nodes``, starts the server with the tiny models added through
``--extra-model-paths-config``, converts the UI forms in the real frontend when Chromium and
playwright-core are there, and queues each workflow. Each shrunken copy saves under its own prefix,
so every video is checked: frame count and size.

The other tests drive one server of their own over HTTP, as a user of the page would: bad values
refused before anything runs, ComfyUI's cache re-running only what a change touches, an interrupted
sampler leaving the models usable, core nodes mixed with the pack's, progress and previews on the
websocket, and the headless runner making the same frames as ComfyUI.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import av
import pytest

from conftest import PACK_DIR
from hunyuanvideo_pack.headless import demo_models
from hunyuanvideo_pack.headless.runner import set_inputs
from hunyuanvideo_pack.headless.ui_form import ui_from_api
from hunyuanvideo_pack.headless.workflow_format import ui_to_api, widgets
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON")
HARNESS = Path(
    os.environ.get("COMFY_ACCEPT")
    or next(
        (path for path in (d / "shared" / "tools" / "comfy_accept.py" for d in PACK_DIR.parents[:2]) if path.is_file()),
        PACK_DIR.parent / "shared" / "tools" / "comfy_accept.py",
    )
)
SIZE = {"width": 96, "height": 64, "frames": 9}
STEPS = 2

pytestmark = [
    pytest.mark.skipif(
        not (COMFYUI_DIR and COMFYUI_PYTHON),
        reason="set COMFYUI_DIR (a ComfyUI checkout) and COMFYUI_PYTHON (its Python) to run workflows in ComfyUI",
    ),
    pytest.mark.skipif(not HARNESS.is_file(), reason=f"the acceptance harness {HARNESS} is not there"),
]


def shrunken_copies(folder: Path) -> list[Path]:
    """Every workflow at SIZE and STEPS, saving under ``e2e/<file stem>``."""
    copies = []
    for path in sorted((PACK_DIR / "workflows").glob("*.json")):
        workflow = json.loads(path.read_text())
        if "nodes" in workflow:
            _shrink_ui(workflow, path.stem)
        else:
            overrides = demo_models.shrink_overrides(workflow, SIZE, STEPS)
            (save,) = [i for i, n in workflow.items() if n["class_type"] == "HunyuanVideoSaveVideo"]
            set_inputs(workflow, [*overrides, f"{save}.filename_prefix=e2e/{path.stem}"], NODE_CLASS_MAPPINGS)
        copies.append(folder / path.name)
        copies[-1].write_text(json.dumps(workflow, indent=2))
    return copies


def _shrink_ui(workflow: dict, stem: str) -> None:
    nodes = {str(node["id"]): node for node in workflow["nodes"]}
    api = ui_to_api(workflow, NODE_CLASS_MAPPINGS)
    overrides = demo_models.shrink_overrides(api, SIZE, STEPS)
    (save,) = [i for i, n in api.items() if n["class_type"] == "HunyuanVideoSaveVideo"]
    for override in [*overrides, f'{save}.filename_prefix="e2e/{stem}"']:
        target, value = override.split("=")
        node_id, name = target.split(".")
        _set_widget(nodes[node_id], name, json.loads(value))


def _set_widget(node: dict, name: str, value) -> None:
    position = 0
    for widget in widgets(NODE_CLASS_MAPPINGS[node["type"]].INPUT_TYPES()):
        if widget.name == name:
            node["widgets_values"][position] = value
            return
        position += 1 + widget.extra_slots
    raise KeyError(name)


@pytest.fixture(scope="module")
def model_paths(tmp_path_factory) -> Path:
    """An extra_model_paths.yaml pointing ComfyUI at tiny stand-ins of every file the workflows name."""
    folder = tmp_path_factory.mktemp("e2e_models")
    models = demo_models.write_demo_models(folder / "models")
    paths = folder / "extra_model_paths.yaml"
    paths.write_text(
        "hunyuanvideo_tiny:\n"
        f"    base_path: {models}\n"
        "    diffusion_models: diffusion_models\n"
        "    text_encoders: text_encoders\n"
        "    vae: vae\n"
        "    loras: loras\n"
        "    clip_vision: clip_vision\n"
    )
    return paths


def run_harness(workflows: list[Path], output: Path, model_paths: Path, *options: str) -> subprocess.CompletedProcess:
    """The acceptance harness on ``workflows``, with the tiny models, saving into ``output``; Load Image reads
    the image_to_video workflow's sample image from an input folder beside it."""
    inputs = output.parent / "input"
    inputs.mkdir(exist_ok=True)
    shutil.copy(PACK_DIR / "workflows" / "hunyuanvideo_i2v_sample.png", inputs)
    command = [
        sys.executable,
        str(HARNESS),
        "--comfy",
        COMFYUI_DIR,
        "--python",
        COMFYUI_PYTHON,
        "--pack",
        str(PACK_DIR),
        "--output-dir",
        str(output),
        *options,
        f"--extra-args=--extra-model-paths-config {model_paths} --cache-none --input-directory {inputs}",
        *(f"--workflow={path}" for path in workflows),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    print(run.stdout[-20000:], run.stderr[-5000:])
    return run


def test_every_workflow_writes_its_video_in_a_real_comfyui_server(tmp_path, model_paths):
    paths = model_paths
    (tmp_path / "workflows").mkdir()
    copies = shrunken_copies(tmp_path / "workflows")
    output = tmp_path / "output"
    run = run_harness(copies, output, paths)
    assert run.returncode == 0, run.stdout[-5000:]
    assert f"workflows: {len(copies)} passed, 0 failed" in run.stdout
    for copy in copies:
        section = run.stdout.split(f"workflow {copy}\n", 1)[1].split("\nworkflow ", 1)[0]
        print(copy.name, re.search(r"status: \w+ \([\d.]+ s\)", section).group(0))
        with av.open(str(output / "e2e" / f"{copy.stem}_00001_.mp4")) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(video=0))
            assert (frames, stream.width, stream.height) == (SIZE["frames"], SIZE["width"], SIZE["height"]), copy


def test_ui_workflows_built_from_api_runs_rebuild_their_graph_in_the_real_frontend(tmp_path, model_paths):
    # What a video from an API-form headless run carries (issue 17, item 3): ComfyUI's page must load it
    # (loadGraphData) and turn it back into the graph that ran (graphToPrompt), which then runs.
    if not (
        shutil.which("node") and shutil.which("chromium") and Path("~/comfy-accept/playwright").expanduser().is_dir()
    ):
        pytest.skip("needs node, chromium and playwright-core (~/comfy-accept/playwright) for the real frontend")
    (tmp_path / "workflows").mkdir()
    rebuilt = []
    for path in sorted((PACK_DIR / "workflows").glob("*_api.json")):
        api = json.loads(path.read_text())
        (save,) = [i for i, n in api.items() if n["class_type"] == "HunyuanVideoSaveVideo"]
        overrides = [*demo_models.shrink_overrides(api, SIZE, STEPS), f"{save}.filename_prefix=e2e/{path.stem}_rebuilt"]
        set_inputs(api, overrides, NODE_CLASS_MAPPINGS)
        rebuilt.append(tmp_path / "workflows" / f"{path.stem}_rebuilt.json")
        rebuilt[-1].write_text(json.dumps(ui_from_api(api, NODE_CLASS_MAPPINGS)))
    output = tmp_path / "output"
    run = run_harness(rebuilt, output, model_paths, "--ui-convert", "browser")
    assert f"converting {len(rebuilt)} UI workflow(s) with the real frontend" in run.stdout
    assert run.returncode == 0 and f"workflows: {len(rebuilt)} passed, 0 failed" in run.stdout
    for path in rebuilt:
        assert len(_video_frames(output / "e2e" / f"{path.stem}_00001_.mp4")) == SIZE["frames"]


# ---------------------------------------------------------------------------------------------
# One server of our own, driven over HTTP


class Server:
    """A ComfyUI server started with the pack alone; ``output`` is its output folder."""

    def __init__(self, url: str, output: Path) -> None:
        self.url, self.output, self.client_id = url, output, str(uuid.uuid4())

    def request(self, path: str, data: dict | None = None) -> tuple[int, dict | bytes]:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(self.url + path, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def queue(self, prompt: dict) -> tuple[int, dict]:
        return self.request("/prompt", {"prompt": prompt, "client_id": self.client_id})

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, history = self.request(f"/history/{prompt_id}")
            if prompt_id in history:
                return history[prompt_id]
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")

    def run(self, prompt: dict) -> dict:
        """Queue ``prompt`` and return its history entry once done; it must pass validation."""
        status, answer = self.queue(prompt)
        assert status == 200 and not answer["node_errors"], answer
        return self.wait(answer["prompt_id"])


def _messages(entry: dict, kind: str) -> list:
    return [data for name, data in entry["status"]["messages"] if name == kind]


def _cached(entry: dict) -> set[str]:
    (cached,) = _messages(entry, "execution_cached")
    return set(cached["nodes"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_paths, tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e_server")
    link = Path(COMFYUI_DIR) / "custom_nodes" / PACK_DIR.name
    if link.is_symlink() and link.resolve() != PACK_DIR.resolve() or link.exists() and not link.is_symlink():
        pytest.skip(f"{link} is taken by something else")
    made_link = not link.is_symlink()
    if made_link:
        link.symlink_to(PACK_DIR, target_is_directory=True)
    port = _free_port()
    command = [
        COMFYUI_PYTHON,
        "main.py",
        "--cpu",
        "--listen",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-auto-launch",
        "--disable-api-nodes",
        "--disable-all-custom-nodes",
        "--whitelist-custom-nodes",
        PACK_DIR.name,
        "--preview-method",
        "auto",
        "--extra-model-paths-config",
        str(model_paths),
        "--output-directory",
        str(folder / "output"),
        "--temp-directory",
        str(folder / "temp"),
    ]
    log = folder / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=COMFYUI_DIR, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        comfy = Server(f"http://127.0.0.1:{port}", folder / "output")
        deadline = time.monotonic() + 120
        while True:
            try:
                if comfy.request("/system_stats")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield comfy
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        if made_link:
            link.unlink()
        print(log.read_text()[-5000:])


def small_workflow(prefix: str, seed: int = 42, steps: int = STEPS) -> dict:
    """text_to_video_api at SIZE, saving under ``prefix``; node ids as in the file (1 DiT loader,
    2 text encoder loader, 3 encode, 4 empty latent, 5 sampler, 6 VAE loader, 7 decode, 8 save)."""
    api = json.loads((PACK_DIR / "workflows" / "text_to_video_api.json").read_text())
    overrides = demo_models.shrink_overrides(api, SIZE, steps)
    set_inputs(api, [*overrides, f"5.seed={seed}", f"8.filename_prefix={prefix}"], NODE_CLASS_MAPPINGS)
    return api


def _video_frames(path: Path):
    import numpy as np

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _saved_video(comfy: Server, entry: dict, node: str = "8") -> Path:
    (saved,) = entry["outputs"][node]["images"]
    return comfy.output / saved["subfolder"] / saved["filename"]


def test_bad_values_are_refused_before_anything_runs(server):
    cases = {
        "4.frames=72": ("4", "custom_validation_failed", "frames must be of the form 4k+1"),
        "4.width=850": ("4", "custom_validation_failed", "Nearest valid: 848 or 864"),
        "4.width=8192": ("4", "custom_validation_failed", "width 8192 is above the maximum 4096"),
        "5.steps=0": ("5", "value_smaller_than_min", "steps"),
        "3.cfg_scale=0.5": ("3", "value_smaller_than_min", "cfg_scale"),
        "7.tiling=spiral": ("7", "custom_validation_failed", "tiling 'spiral' is not one of the choices"),
        "8.crf=60": ("8", "custom_validation_failed", "crf 60 is outside 0..51"),
        "1.model_name=missing.safetensors": ("1", "value_not_in_list", "'missing.safetensors' not in"),
    }
    for override, (node, kind, text) in cases.items():
        prompt = small_workflow("e2e_server/refused")
        set_inputs(prompt, [override], NODE_CLASS_MAPPINGS)
        status, answer = server.queue(prompt)
        assert status == 400, override
        errors = answer["node_errors"][node]["errors"]
        assert any(e["type"] == kind and text in e["details"] for e in errors), (override, errors)
    # Every problem of a node is listed; output problems are found here, before anything loads.
    (server.output / "e2e_server").mkdir(parents=True, exist_ok=True)
    (server.output / "e2e_server" / "in_the_way").write_text("a file where a folder must be")
    many = {
        ("4.width=8192", "4.height=8192"): (
            "4",
            ["width 8192 is above the maximum", "height 8192 is above the maximum"],
        ),
        ("8.filename_prefix=../../escape",): ("8", ["points outside the output folder"]),
        ("8.filename_prefix=e2e_server/in_the_way/clip", "8.crf=60"): ("8", ["in_the_way is a file", "crf 60"]),
    }
    for overrides, (node, texts) in many.items():
        prompt = small_workflow("e2e_server/refused")
        set_inputs(prompt, list(overrides), NODE_CLASS_MAPPINGS)
        status, answer = server.queue(prompt)
        assert status == 400, overrides
        details = " ".join(e["details"] for e in answer["node_errors"][node]["errors"])
        assert all(text in details for text in texts), (overrides, details)
    # A widget turned into an input gets its value only when the graph runs: validation must not trip on it.
    prompt = small_workflow("e2e_server/linked_width")
    prompt["20"] = {"class_type": "PrimitiveInt", "inputs": {"value": SIZE["width"]}}
    prompt["4"]["inputs"]["width"] = ["20", 0]
    assert server.run(prompt)["status"]["status_str"] == "success"


def test_changing_the_seed_reruns_only_the_sampler_and_what_follows(server):
    server.run(small_workflow("e2e_server/cache"))
    again = server.run(small_workflow("e2e_server/cache"))
    assert _cached(again) == {str(i) for i in range(1, 9)}  # nothing changed, nothing ran
    reseeded = server.run(small_workflow("e2e_server/cache", seed=43))
    assert _cached(reseeded) == {"1", "2", "3", "4", "6"}  # DiT, text encoders, prompt and VAE not reloaded


def test_an_interrupted_sampler_ends_as_interrupted_and_the_models_stay_usable(server):
    server.run(small_workflow("e2e_server/interrupt"))  # models loaded and cached
    status, answer = server.queue(small_workflow("e2e_server/interrupt", seed=7, steps=1000))  # about a minute
    assert status == 200
    while not any(item[1] == answer["prompt_id"] for item in server.request("/queue")[1]["queue_running"]):
        time.sleep(0.1)
    time.sleep(2.0)
    server.request("/interrupt", {})
    entry = server.wait(answer["prompt_id"], timeout=60)
    assert entry["status"]["status_str"] == "error" and not _messages(entry, "execution_error")
    (interrupted,) = _messages(entry, "execution_interrupted")
    assert interrupted["node_type"] == "HunyuanVideoSampler"

    after = server.run(small_workflow("e2e_server/interrupt", seed=8))
    assert after["status"]["status_str"] == "success" and {"1", "2", "6"} <= _cached(after)
    assert len(_video_frames(_saved_video(server, after))) == SIZE["frames"]


def test_core_nodes_mix_with_the_pack_s_latents_and_images(server):
    prompt = small_workflow("e2e_server/mix")
    prompt["20"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "e2e_server/mix"}}
    first = server.run(prompt)
    (latent,) = first["outputs"]["20"]["latents"]

    # A saved latent back through core LoadLatent into our decoder; our frames into core image nodes.
    prompt = {key: small_workflow("e2e_server/mix_reloaded")[key] for key in ("6", "7", "8")}
    prompt["21"] = {
        "class_type": "LoadLatent",
        "inputs": {"latent": f"{latent['subfolder']}/{latent['filename']} [output]"},
    }
    prompt["7"]["inputs"]["samples"] = ["21", 0]
    prompt["22"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {"images": ["7", 0], "filename_prefix": "e2e_server/mix", "fps": 24.0, "lossless": False},
    }
    prompt["22"]["inputs"] |= {"quality": 80, "method": "default"}
    prompt["23"] = {"class_type": "PreviewImage", "inputs": {"images": ["7", 0]}}
    prompt["24"] = {
        "class_type": "ImageScale",
        "inputs": {"image": ["7", 0], "upscale_method": "bilinear", "width": 48, "height": 32, "crop": "disabled"},
    }
    prompt["25"] = small_workflow("e2e_server/mix_scaled")["8"]
    prompt["25"]["inputs"]["images"] = ["24", 0]
    second = server.run(prompt)
    assert second["status"]["status_str"] == "success", second["status"]
    assert second["outputs"]["22"]["animated"] == [True]
    assert len(second["outputs"]["23"]["images"]) == SIZE["frames"]
    assert _video_frames(_saved_video(server, second, "25")).shape == (SIZE["frames"], 32, 48, 3)
    # The latent made the round trip through the .latent file unchanged: the same video.
    assert (_video_frames(_saved_video(server, second)) == _video_frames(_saved_video(server, first))).all()

    # ComfyUI's own empty HunyuanVideo latent into our sampler, a batch of two.
    prompt = small_workflow("e2e_server/core_latent")
    prompt["4"] = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"length": SIZE["frames"], "batch_size": 2}}
    prompt["4"]["inputs"] |= {"width": SIZE["width"], "height": SIZE["height"]}
    third = server.run(prompt)
    assert len(_video_frames(_saved_video(server, third))) == 2 * SIZE["frames"]

    # SaveVideo's result is what the page shows, and the page fetches it through /view.
    (saved,) = third["outputs"]["8"]["images"]
    query = f"/view?filename={saved['filename']}&subfolder={saved['subfolder']}&type=output"
    with urllib.request.urlopen(server.url + query) as response:
        assert response.headers["Content-Type"] == "video/mp4"
        assert response.read() == _saved_video(server, third).read_bytes()


def test_progress_and_previews_reach_the_websocket(server):
    # The websocket client comes from ComfyUI's own environment (aiohttp).
    script = r"""
import asyncio, json, sys, aiohttp
url, client, prompt = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
async def main():
    seen = {"progress": [], "previews": 0}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws?clientId={client}") as ws:
            await session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": client})
            async for message in ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    seen["previews"] += int.from_bytes(message.data[:4], "big") == 1
                    continue
                event = json.loads(message.data)
                if event["type"] == "progress":
                    seen["progress"].append([event["data"]["node"], event["data"]["value"], event["data"]["max"]])
                if event["type"] in ("execution_success", "execution_error"):
                    seen["end"] = event["type"]
                    break
    print(json.dumps(seen))
asyncio.run(main())
"""
    prompt = small_workflow("e2e_server/progress", seed=11, steps=3)
    run = subprocess.run(
        [COMFYUI_PYTHON, "-c", script, server.url, str(uuid.uuid4()), json.dumps(prompt)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.splitlines()[-1])
    assert seen["end"] == "execution_success"
    assert [p for p in seen["progress"] if p[0] == "5"] == [["5", 1, 3], ["5", 2, 3], ["5", 3, 3]]
    assert seen["previews"] == 3  # one preview image per sampler step (--preview-method auto)


def test_the_headless_runner_makes_the_same_frames_as_comfyui(server, model_paths, tmp_path):
    prompt = small_workflow("e2e_server/parity", seed=5)
    in_comfyui = _video_frames(_saved_video(server, server.run(prompt)))
    workflow = tmp_path / "parity_api.json"
    workflow.write_text(json.dumps(prompt))
    run = subprocess.run(
        [sys.executable, str(PACK_DIR / "run_workflow.py"), str(workflow), "--no-demo"]
        + ["--models-dir", str(model_paths.parent / "models"), "--output-dir", str(tmp_path / "output")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    headless = _video_frames(tmp_path / "output" / "e2e_server" / "parity_00001_.mp4")
    # Same seed, same tiny models, both on the CPU (ComfyUI's venv has its own torch build): the same
    # latents to within float rounding, so the same 8-bit frames after H.264.
    assert headless.shape == in_comfyui.shape
    assert abs(headless.astype(int) - in_comfyui.astype(int)).max() <= 1
