"""Shared fixtures. The pack is imported the way ComfyUI imports ``custom_nodes/<folder>``:
as a package from its ``__init__.py`` under a name unrelated to the folder, so absolute imports of
the pack's own modules would fail here just as they would in ComfyUI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_NAME = "hunyuanvideo_pack"


def import_pack(name: str = PACK_NAME):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PACK_DIR / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


import_pack()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on one thread: on a shared 2-core machine two OpenMP threads wait on each other ~10 ms per op,
    so tiny forwards and convolutions run about 10x faster on one. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def models_dir(tmp_path):
    """An empty standalone models directory with ComfyUI's folder names, configured as current."""
    from hunyuanvideo_pack.nodes import comfy_env

    for folders in comfy_env.MODEL_FOLDERS.values():
        for folder in folders:
            (tmp_path / "models" / folder).mkdir(parents=True, exist_ok=True)
    previous = comfy_env.models_directory(), comfy_env.output_directory()
    comfy_env.configure(models_dir=tmp_path / "models", output_dir=tmp_path / "output")
    yield tmp_path / "models"
    comfy_env.configure(*previous)


@pytest.fixture(scope="session")
def text_tokenizers(tmp_path_factory):
    """The real LLaVA-Llama-3 and CLIP-L tokenizers, built offline once: folders and loaded objects."""
    from types import SimpleNamespace

    from hunyuanvideo_pack.hunyuan_model.text_encoder.tokenizers import load_tokenizer
    from hunyuanvideo_pack.hunyuan_model.tiny import text_encoder_files as tiny

    root = tmp_path_factory.mktemp("tokenizers")
    llm_dir = tiny.write_llama3_tokenizer(root / "llava_llama3")
    clip_dir = tiny.write_clip_tokenizer(root / "clip_l")
    return SimpleNamespace(
        llm_dir=llm_dir, clip_dir=clip_dir, llm=load_tokenizer(llm_dir, "llm"), clip=load_tokenizer(clip_dir, "clip")
    )


@pytest.fixture(scope="session")
def tiny_text_models():
    """Tiny random LLM and CLIP in float32 with fp16-representable weights, so that files written
    in fp16 load back to exactly these models."""
    import torch

    from hunyuanvideo_pack.hunyuan_model.tiny import text_encoder_files as tiny

    llm, clip = tiny.random_llm(seed=1), tiny.random_clip(seed=2)
    with torch.no_grad():
        for parameter in [*llm.parameters(), *clip.parameters()]:
            parameter.copy_(parameter.half().float())
    return llm, clip


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory):
    """A models folder holding a tiny stand-in for every model file the shared workflows name."""
    from hunyuanvideo_pack.headless.demo_models import write_demo_models

    return write_demo_models(tmp_path_factory.mktemp("demo_models"))
