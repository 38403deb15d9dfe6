"""The standalone side of the ComfyUI adapter: model folders, the path guard, devices, cancel."""

import importlib
import os
import sys
import time
import types

import pytest
import torch
from comfyui_run import run_in_comfyui

from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS, comfy_env, demo_models
from hunyuanvideo_pack.nodes import host as host_package
from hunyuanvideo_pack.nodes.host.standalone import StandaloneHost


def test_models_of_a_kind_are_listed_across_its_folders(models_dir):
    (models_dir / "diffusion_models" / "a.safetensors").write_bytes(b"x")
    (models_dir / "unet" / "sub").mkdir()
    (models_dir / "unet" / "sub" / "b.gguf").write_bytes(b"x")
    (models_dir / "unet" / "notes.txt").write_text("x")
    (models_dir / "text_encoders" / "llava").mkdir()
    (models_dir / "text_encoders" / "llava" / "config.json").write_text("{}")
    (models_dir / "text_encoders" / "llava" / "model.safetensors").write_bytes(b"x")

    assert comfy_env.list_models("diffusion_models", (".safetensors", ".gguf")) == ["a.safetensors", "sub/b.gguf"]
    assert comfy_env.list_models("text_encoders", (".safetensors",), include_dirs=True) == ["llava"]
    assert comfy_env.list_models("text_encoders", (".safetensors",)) == ["llava/model.safetensors"]


def _age(root, seconds: float = 60.0) -> None:
    """Date every directory under ``root`` back, as folders that have not changed for a while."""
    then = time.time() - seconds
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, (then, then))


def test_listings_are_kept_until_a_folder_in_them_changes(models_dir, monkeypatch):
    (models_dir / "unet" / "sub").mkdir()
    (models_dir / "unet" / "sub" / "a.gguf").write_bytes(b"x")
    _age(models_dir)
    walked = []
    real_walk = os.walk
    monkeypatch.setattr(os, "walk", lambda top, **kw: walked.append(str(top)) or real_walk(top, **kw))

    assert comfy_env.list_models("diffusion_models", (".gguf",)) == ["sub/a.gguf"]
    assert len(walked) == 2  # diffusion_models and unet
    assert comfy_env.list_models("diffusion_models", (".gguf",)) == ["sub/a.gguf"]
    assert len(walked) == 2  # nothing changed: nothing walked again

    (models_dir / "unet" / "sub" / "b.gguf").write_bytes(b"x")  # a change two levels down
    assert comfy_env.list_models("diffusion_models", (".gguf",)) == ["sub/a.gguf", "sub/b.gguf"]
    assert len(walked) == 4
    # Just changed: the folder may change again within its mtime's resolution, so it is walked each time.
    assert comfy_env.list_models("diffusion_models", (".gguf",)) == ["sub/a.gguf", "sub/b.gguf"]
    assert len(walked) == 6


def test_output_files_are_listed_from_subfolders_but_not_hidden_ones(models_dir):
    output = models_dir.parent / "output"
    for name in ("embeds_00001_.safetensors", "hv/embeds_00002_.SAFETENSORS", ".cache/x.safetensors", "a.png"):
        (output / name).parent.mkdir(parents=True, exist_ok=True)
        (output / name).write_bytes(b"x")
    assert comfy_env.list_output_files((".safetensors",)) == [
        "embeds_00001_.safetensors",
        "hv/embeds_00002_.SAFETENSORS",
    ]


def test_a_model_fingerprint_changes_when_the_file_is_replaced(models_dir):
    vae = models_dir / "vae" / "a.safetensors"
    vae.write_bytes(b"x")
    (models_dir / "diffusion_models" / "diffusers").mkdir()
    shard = models_dir / "diffusion_models" / "diffusers" / "model.safetensors"
    shard.write_bytes(b"x")
    before = comfy_env.model_fingerprint("vae", "a.safetensors")
    folder = comfy_env.model_fingerprint("diffusion_models", "diffusers")
    assert comfy_env.model_fingerprint("vae", "a.safetensors") == before
    vae.write_bytes(b"yy")
    shard.write_bytes(b"yy")
    assert comfy_env.model_fingerprint("vae", "a.safetensors") != before
    assert comfy_env.model_fingerprint("diffusion_models", "diffusers") != folder
    assert comfy_env.model_fingerprint("vae", "gone.safetensors", None) == "gone.safetensors|None"


def test_every_loader_reruns_when_one_of_its_files_changes_on_disk(demo_models_dir, models_dir):
    comfy_env.configure(models_dir=demo_models_dir)
    choices = {}  # node -> {input: file name}
    for (node, name), kind in demo_models.MODEL_INPUTS.items():
        choices.setdefault(node, {})[name] = next((demo_models_dir / kind).glob("*.safetensors")).name
    for (node, name), kind in demo_models.MODEL_INPUTS.items():
        is_changed = NODE_CLASS_MAPPINGS[node].IS_CHANGED
        before = is_changed(**choices[node])
        assert is_changed(**choices[node]) == before, node
        stat = (path := demo_models_dir / kind / choices[node][name]).stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
        assert is_changed(**choices[node]) != before, (node, name)


def test_a_name_inside_the_folders_resolves(models_dir):
    (models_dir / "unet" / "sub").mkdir()
    target = models_dir / "unet" / "sub" / "b.gguf"
    target.write_bytes(b"x")
    assert comfy_env.resolve_model("diffusion_models", "sub/b.gguf") == target


@pytest.mark.parametrize("name", ["../secret.safetensors", "sub/../../secret.safetensors", "..\\secret.safetensors"])
def test_names_with_dotdot_are_refused(models_dir, name):
    (models_dir / "secret.safetensors").write_bytes(b"x")
    with pytest.raises(PermissionError, match="contains '..'"):
        comfy_env.resolve_model("vae", name)


@pytest.mark.parametrize("name", ["/etc/passwd", "C:\\Windows\\x.pt", "\\\\server\\share\\x.pt"])
def test_absolute_names_are_refused(models_dir, name):
    with pytest.raises(PermissionError, match="absolute path"):
        comfy_env.resolve_model("vae", name)


def test_a_symlink_leading_out_of_the_folders_is_refused(models_dir, tmp_path):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"x")
    os.symlink(outside, models_dir / "vae" / "link.safetensors")
    assert comfy_env.list_models("vae", (".safetensors",)) == ["link.safetensors"]  # shown, then explained
    with pytest.raises(PermissionError, match="outside the vae folders.*extra_model_paths.yaml"):
        comfy_env.resolve_model("vae", "link.safetensors")


def test_a_kind_folder_that_is_itself_a_link_is_inside(models_dir, tmp_path):
    elsewhere = tmp_path / "big_drive" / "vae"
    elsewhere.mkdir(parents=True)
    (elsewhere / "v.safetensors").write_bytes(b"x")
    (models_dir / "vae").rmdir()
    os.symlink(elsewhere, models_dir / "vae")
    assert comfy_env.resolve_model("vae", "v.safetensors").resolve() == elsewhere / "v.safetensors"


def test_a_symlink_inside_the_folders_is_fine(models_dir):
    real = models_dir / "vae" / "real.safetensors"
    real.write_bytes(b"x")
    os.symlink(real, models_dir / "vae" / "alias.safetensors")
    assert comfy_env.resolve_model("vae", "alias.safetensors").name == "alias.safetensors"


def test_a_missing_model_names_the_folders_searched(models_dir):
    with pytest.raises(FileNotFoundError) as error:
        comfy_env.resolve_model("text_encoders", "clip_l.safetensors")
    assert "clip_l.safetensors" in str(error.value)
    assert str(models_dir / "text_encoders") in str(error.value)
    assert str(models_dir / "clip") in str(error.value)


def test_empty_name_and_unknown_kind_are_clear_errors(models_dir):
    with pytest.raises(ValueError, match="no model file chosen"):
        comfy_env.resolve_model("vae", "")
    with pytest.raises(ValueError, match="unknown model folder kind 'checkpointz'"):
        comfy_env.model_folders("checkpointz")


def test_standalone_devices_and_memory():
    assert isinstance(comfy_env.host(), StandaloneHost)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert comfy_env.compute_device().type == expected
    assert comfy_env.offload_device() == torch.device("cpu")
    assert comfy_env.free_memory(torch.device("cpu")) > 100 * 2**20


def test_cancel_raises_at_the_next_progress_update_once():
    with comfy_env.Progress(3) as progress:
        progress.update(1)
        comfy_env.request_cancel()
        with pytest.raises(comfy_env.Cancelled):
            progress.update(2)
        progress.update(3)  # the flag is consumed: a new run is not cancelled


@pytest.fixture
def comfyui_host(monkeypatch):
    """The ComfyUI host over stand-ins for the ComfyUI modules it imports (the real ones: tests that run
    against COMFYUI_DIR). Yields the host module; its ``mm`` is the stand-in model_management."""
    mm = types.SimpleNamespace(throw_exception_if_processing_interrupted=lambda: None, get_torch_device=lambda: "cpu")
    utils = types.SimpleNamespace()
    comfy = types.SimpleNamespace(
        model_management=mm, utils=utils, model_patcher=types.SimpleNamespace(ModelPatcher=object)
    )
    stand_ins = {"comfy": comfy, "folder_paths": types.SimpleNamespace()}
    stand_ins.update({f"comfy.{name}": getattr(comfy, name) for name in ("model_management", "utils", "model_patcher")})
    for name, module in stand_ins.items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("comfyui", "comfy_memory"):
        monkeypatch.delitem(sys.modules, f"hunyuanvideo_pack.nodes.host.{name}", raising=False)
    comfyui = importlib.import_module("hunyuanvideo_pack.nodes.host.comfyui")
    monkeypatch.setattr(host_package, "_current", comfyui.ComfyUIHost())
    yield comfyui
    for name in ("comfyui", "comfy_memory"):
        sys.modules.pop(f"hunyuanvideo_pack.nodes.host.{name}", None)


def test_inside_comfyui_the_previewer_is_made_once_and_only_for_preview_latents(comfyui_host, monkeypatch):
    # ComfyUI's get_previewer loads a TAESD model, or warns that there is none, each time it is called.
    bars, made = [], []

    class Bar:
        def __init__(self, total):
            bars.append([])

        def update_absolute(self, value, total, preview):
            bars[-1].append((value, preview))

    class Previewer:
        def decode_latent_to_preview_image(self, format, latent):
            return (format, latent.shape)

    monkeypatch.setattr(comfyui_host.comfy.utils, "ProgressBar", Bar, raising=False)
    monkeypatch.setattr(comfyui_host, "make_previewer", lambda device: made.append(device) or Previewer())

    with comfy_env.Progress(2) as loading:
        loading.update(1)
        loading.update(2)
    latent = torch.zeros(1, 16, 1, 2, 2)
    with comfy_env.Progress(2) as sampling:
        sampling.update(1, latent)
        sampling.update(2, latent)
    assert made == ["cpu"]
    assert bars == [[(1, None), (2, None)], [(1, ("JPEG", latent.shape)), (2, ("JPEG", latent.shape))]]


def test_inside_comfyui_every_placed_model_is_tracked_and_free_memory_counts_dynamic_vram():
    run_in_comfyui("""
        class EncoderPair:  # what the text encoder is: no nn.Module, two models inside
            def __init__(self):
                self.llm, self.clip = torch.nn.Linear(8, 8), torch.nn.Linear(4, 4)

            def parameters(self):
                return [*self.llm.parameters(), *self.clip.parameters()]

            def buffers(self):
                return []

            def to(self, device):
                self.llm.to(device), self.clip.to(device)
                return self

        text = PlacedModel(EncoderPair(), cpu, meta, after_run=comfy_env.track_model)
        vae = PlacedModel(torch.nn.Conv3d(4, 4, 3), cpu, meta, after_run=comfy_env.track_model)
        dit = TransformerHandle(HunyuanVideoTransformer(DiTConfig.tiny()), cpu, meta, after_run=comfy_env.track_model)
        for placed in (text, vae, dit):
            with placed.running((1, 16, 1, 8, 8)):  # kept on the device after the run
                pass
        assert len(mm.current_loaded_models) == 3

        free = 10**9
        mm.get_free_memory = lambda dev=None, torch_free_too=False: (free, free) if torch_free_too else free
        comfy_env.make_room(free + 10**12, cpu, keep=dit)  # room for the DiT's run: the others leave
        assert [entry.model.model for entry in mm.current_loaded_models] == [dit.model]
        assert {p.device.type for p in [*text.model.parameters(), *vae.model.parameters()]} == {"meta"}
        assert dit.resident_bytes() == module_bytes(dit.model)

        assert comfy_env.free_memory(cpu) == free
        if CURRENT:  # dynamic VRAM gives back ComfyUI's own models' weights on demand: that is free for us
            import comfy.memory_management
            import comfy_aimdo.model_vbar

            comfy.memory_management.aimdo_enabled = True
            comfy_aimdo.model_vbar.vbars_analyze = lambda: 12345
            assert comfy_env.free_memory(cpu) == free + 12345
        print("ok")
    """)
