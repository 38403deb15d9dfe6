"""The pack as ComfyUI sees it: import, node registry, tooltips, boundaries."""

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import hunyuanvideo_pack
from conftest import PACK_DIR
from hunyuanvideo_pack.nodes import NODE_CLASSES

TAKEN_IDS = {
    line.strip()
    for line in (Path(__file__).parent / "data" / "taken_node_ids.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}
OPTIONAL_HEAVY = ("flash_attn", "sageattention", "gguf", "bitsandbytes")


def test_mappings_are_exported_and_consistent():
    assert set(hunyuanvideo_pack.NODE_CLASS_MAPPINGS) == set(hunyuanvideo_pack.NODE_DISPLAY_NAME_MAPPINGS)
    assert "HunyuanVideoEmptyLatent" in hunyuanvideo_pack.NODE_CLASS_MAPPINGS
    assert len(hunyuanvideo_pack.NODE_CLASS_MAPPINGS) == len(NODE_CLASSES)


def test_node_ids_names_and_categories_follow_the_house_rules():
    for node_id, cls in hunyuanvideo_pack.NODE_CLASS_MAPPINGS.items():
        assert re.fullmatch(r"HunyuanVideo[A-Z]\w+", node_id), node_id
        assert hunyuanvideo_pack.NODE_DISPLAY_NAME_MAPPINGS[node_id].startswith("HunyuanVideo "), node_id
        assert cls.CATEGORY == "HunyuanVideo" or cls.CATEGORY.startswith("HunyuanVideo/"), node_id
        assert callable(getattr(cls, cls.FUNCTION)), node_id


def test_no_node_id_collides_with_comfyui_core_or_kijais_wrapper():
    assert len(TAKEN_IDS) > 500  # the list itself is intact: 495 core + 32 wrapper ids
    assert not set(hunyuanvideo_pack.NODE_CLASS_MAPPINGS) & TAKEN_IDS


def test_every_input_and_output_is_explained():
    for cls in NODE_CLASSES:
        assert len(cls.DESCRIPTION) > 20, cls.__name__
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES), cls.__name__
        inputs = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, spec in inputs.get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert len(options.get("tooltip", "")) > 10, f"{cls.__name__}.{name} has no tooltip"


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd="/", timeout=120
    )


def test_import_needs_no_optional_dependency_and_loads_none():
    result = _run_isolated(
        f"""
        import importlib.abc, importlib.util, sys
        BLOCKED = {OPTIONAL_HEAVY!r} + ("comfy", "folder_paths", "diffusers", "transformers")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked: {{name}}")

        sys.meta_path.insert(0, Block())
        spec = importlib.util.spec_from_file_location("some_folder_name", {str(PACK_DIR / "__init__.py")!r})
        pack = importlib.util.module_from_spec(spec)
        sys.modules["some_folder_name"] = pack
        spec.loader.exec_module(pack)
        print(len(pack.NODE_CLASS_MAPPINGS))
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        """
    )
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.split("\n")[:2]
    assert int(count) == len(NODE_CLASSES)
    assert loaded == "[]"


def test_model_package_never_imports_comfyui_or_diffusers():
    offenders = []
    for path in (PACK_DIR / "hunyuan_model").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"\s*(import|from)\s+(comfy|folder_paths|latent_preview|diffusers)\b", line):
                offenders.append(f"{path.relative_to(PACK_DIR)}:{number}: {line.strip()}")
    assert offenders == []


def test_only_the_host_package_touches_comfyui():
    pattern = re.compile(r"\s*(import|from)\s+(comfy|folder_paths|latent_preview|comfy_api)\b")
    offenders = [
        str(path.relative_to(PACK_DIR))
        for path in PACK_DIR.rglob("*.py")
        if path.parent != PACK_DIR / "nodes" / "host"
        and "tests" not in path.parts
        and any(pattern.match(line) for line in path.read_text().splitlines())
    ]
    assert offenders == []


def test_pack_modules_use_relative_imports_only():
    # An absolute `import nodes` inside ComfyUI would get ComfyUI's own nodes.py.
    pattern = re.compile(r"\s*(import|from)\s+(nodes|hunyuan_model)\b")
    offenders = [
        str(path.relative_to(PACK_DIR))
        for path in PACK_DIR.rglob("*.py")
        if not {"tests", "bench"} & set(path.parts)
        and any(pattern.match(line) for line in path.read_text().splitlines())
    ]
    assert offenders == []


def test_the_tests_run_in_a_checkout_whose_folder_name_is_not_a_python_name(tmp_path):
    # Users clone into folders such as ComfyUI-HunyuanVideo-Desktop; pytest must still collect there.
    checkout = tmp_path / "ComfyUI-HunyuanVideo-Desktop"
    skip = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".ruff_cache", "output", "models", "docs")
    shutil.copytree(PACK_DIR, checkout, ignore=skip)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_latent.py"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed in " in result.stdout
