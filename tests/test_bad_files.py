"""Every bad file in every loader slot gets the same error, naming the file.

Slots: the DiT, its FP8 scale map, the LLM, CLIP and the VAE, through the Python API and through the
loader nodes. Cases: a truncated download, an empty file, random bytes, a saved HTML page (a login or
error page under the model's name), a pickle that would run code (a ``__reduce__`` payload; for the
text encoders a ``pytorch_model.bin`` in a transformers folder), and another model's file. All slots
read through the one weight pipeline (``hunyuan_model.checkpoint``), so the errors are one family:
corrupt, unsafe, wrong model; torch's own ``UnpicklingError`` (and its advice to retry with
``weights_only=False``) never reaches the user.
"""

from __future__ import annotations

import builtins
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.checkpoint import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    WrongModelError,
)
from hunyuanvideo_pack.hunyuan_model.dit import load_transformer
from hunyuanvideo_pack.hunyuan_model.text_encoder import load_clip, load_llm
from hunyuanvideo_pack.hunyuan_model.tiny import dit_files
from hunyuanvideo_pack.hunyuan_model.vae import load_vae
from hunyuanvideo_pack.nodes.model_loader import HunyuanVideoModelLoader
from hunyuanvideo_pack.nodes.text import HunyuanVideoTextEncoderLoader
from hunyuanvideo_pack.nodes.vae import HunyuanVideoVAELoader

SLOTS = ("dit", "scale_map", "llm", "clip", "vae")
FP8_RELEASE = "hunyuan_fp8.pt"
# The good file of each slot (in the demo models folder, or written here), and the folder it lives in.
GOOD = {
    "dit": ("diffusion_models", "hunyuan_video_t2v_720p_bf16.safetensors"),
    "scale_map": ("diffusion_models", "hunyuan_fp8_map.pt"),
    "llm": ("text_encoders", "llava_llama3_fp16.safetensors"),
    "clip": ("text_encoders", "clip_l.safetensors"),
    "vae": ("vae", "hunyuan_video_vae_bf16.safetensors"),
}
# Another model's file picked in each slot, and the advice identify() gives for it.
WRONG = {
    "dit": ("vae", r"it is a HunyuanVideo VAE; load it with HunyuanVideo VAE Loader"),
    "scale_map": ("dit", r"it is a HunyuanVideo text-to-video transformer \(DiT\); choose it as model_name"),
    "llm": ("clip", r"it is a CLIP text encoder .*; choose it as clip"),
    "clip": ("llm", r"it is a Llama language model .*; choose it as llm"),
    "vae": ("dit", r"it is a HunyuanVideo text-to-video transformer \(DiT\); load it with HunyuanVideo Model Loader"),
}


class CodeRunningPayload:
    """Unpickling this would call ``print``: harmless, but any callable could stand there."""

    def __reduce__(self):
        return (builtins.print, ("this file ran code while loading",))


@pytest.fixture(scope="module")
def models(tmp_path_factory, demo_models_dir) -> Path:
    """A models folder with a good file for every slot (the demo's, plus Tencent's FP8 release and map)."""
    root = tmp_path_factory.mktemp("bad_files") / "models"
    shutil.copytree(demo_models_dir, root)
    state = dit_files.release_state_dict(dit_files.random_transformer())
    weights, scale_map = dit_files.write_fp8_release(state, root / "diffusion_models" / FP8_RELEASE)
    assert scale_map.name == GOOD["scale_map"][1]
    return root


def _bad_file(case: str, slot: str, models: Path, folder: Path, tag: str = "") -> Path:
    """The bad file (or folder) of ``case`` for ``slot``, written into ``folder`` (names start with ``tag``)."""
    staging = folder / f"staging_{tag}"
    path = _write_bad_file(case, slot, models, staging)
    path = path.rename(folder / f"{tag}{path.name}")
    staging.rmdir()
    return path


def _write_bad_file(case: str, slot: str, models: Path, folder: Path) -> Path:
    folder.mkdir()
    kind, good_name = GOOD[slot]
    good = models / kind / good_name
    suffix = good.suffix
    if case == "truncated":
        data = good.read_bytes()
        return _write(folder / f"truncated{suffix}", data[: len(data) // 2])
    if case == "zero_bytes":
        return _write(folder / f"empty{suffix}", b"")
    if case == "random_bytes":
        noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(12)).to(torch.uint8)
        return _write(folder / f"noise{suffix}", b"\x00" + noise.numpy().tobytes())
    if case == "html_page":
        page = "<!DOCTYPE html><html><head><title>Sign in</title></head><body>Access denied</body></html>"
        return _write(folder / f"download{suffix}", page.encode())
    if case == "unsafe_pickle":
        payload = {"weight": torch.zeros(2), "payload": CodeRunningPayload()}
        if slot in ("llm", "clip"):  # a transformers folder whose weights are a pickle
            target = folder / f"{slot}_folder"
            target.mkdir()
            (target / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
            torch.save(payload, target / "pytorch_model.bin")
            return target
        path = folder / f"payload{'_fp8_map' if slot == 'scale_map' else ''}.pt"
        torch.save(payload, path)
        return path
    assert case == "wrong_model"
    other_kind, other_name = GOOD[WRONG[slot][0]]
    return Path(shutil.copy(models / other_kind / other_name, folder / other_name))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _expected(case: str, slot: str, bad: Path) -> tuple[type[Exception], str]:
    """The error type and a pattern of its message: the file named, and what it is."""
    named = bad / "pytorch_model.bin" if bad.is_dir() else bad
    if case == "unsafe_pickle":
        return UnsafeCheckpointError, rf"'{re.escape(str(named))}' is a pickle that needs code to load"
    if case == "wrong_model":
        return WrongModelError, rf"'{re.escape(bad.name)}'.* is not .*: {WRONG[slot][1]}"
    return CorruptCheckpointError, rf"'{re.escape(str(bad))}'"


def _api(slot: str, models: Path) -> Callable[[Path], object]:
    fp8_release = models / "diffusion_models" / FP8_RELEASE
    return {
        "dit": load_transformer,
        "scale_map": lambda path: load_transformer(fp8_release, scale_map=path),
        "llm": lambda path: load_llm(path, dtype=torch.float32),
        "clip": lambda path: load_clip(path, dtype=torch.float32),
        "vae": load_vae,
    }[slot]


def _node(slot: str) -> Callable[[str], object]:
    """The loader node of ``slot``, given the bad file's name in its models folder."""
    model = HunyuanVideoModelLoader()
    text = HunyuanVideoTextEncoderLoader()
    llm, clip = GOOD["llm"][1], GOOD["clip"][1]
    return {
        "dit": lambda name: model.load(name, "as_stored", "fp32", "sdpa", "offload_device"),
        "scale_map": lambda name: model.load(FP8_RELEASE, "as_stored", "fp32", "sdpa", "offload_device", name),
        "llm": lambda name: text.load(name, clip, "fp32", "default", "cpu", "offload"),
        "clip": lambda name: text.load(llm, name, "fp32", "default", "cpu", "offload"),
        "vae": lambda name: HunyuanVideoVAELoader().load(name, "fp32"),
    }[slot]


CASES = ("truncated", "zero_bytes", "random_bytes", "html_page", "unsafe_pickle", "wrong_model")


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("slot", SLOTS)
def test_the_python_api_names_the_bad_file(models, tmp_path, slot, case):
    bad = _bad_file(case, slot, models, tmp_path)
    error, message = _expected(case, slot, bad)
    with pytest.raises(error, match=message) as caught:
        _api(slot, models)(bad)
    assert "weights_only=False" not in str(caught.value)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("slot", SLOTS)
def test_the_loader_nodes_name_the_bad_file(models, slot, case):
    from hunyuanvideo_pack.nodes import comfy_env

    previous = comfy_env.models_directory()
    comfy_env.configure(models_dir=models)
    # Beside the good files: the text encoders find their tokenizers there.
    try:
        bad = _bad_file(case, slot, models, models / GOOD[slot][0], tag=f"bad_{slot}_{case}_")
        error, message = _expected(case, slot, bad)
        with pytest.raises(error, match=message):
            _node(slot)(bad.name)
    finally:
        comfy_env.configure(models_dir=previous)
    shutil.rmtree(bad) if bad.is_dir() else bad.unlink()
