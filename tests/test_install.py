"""`pip install .` and `pip install -e .` give a `hunyuan_model` that imports from anywhere (the README's
Python API without PYTHONPATH). Installed without dependencies from a copy of the files the package needs,
so the checkout gets no build folders; the installed copy runs in this Python's site-packages."""

import shutil
import subprocess
import sys
import venv

from conftest import PACK_DIR

CHECK = (
    "import hunyuan_model, sys; from hunyuan_model import ModelSizes, Workload, plan_block_swap, PlacedModel; "
    "import importlib.util; assert importlib.util.find_spec('nodes') is None, 'the node pack must not be installed'; "
    "print(hunyuan_model.__file__)"
)


def _source(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(PACK_DIR / name, source / name)
    shutil.copytree(PACK_DIR / "hunyuan_model", source / "hunyuan_model", ignore=shutil.ignore_patterns("__pycache__"))
    # What a checkout also holds beside the package: found by setuptools' discovery, it must stay out.
    for other in ("nodes", "tests", "bench", "tools", "workflows"):
        (source / other).mkdir()
        (source / other / "__init__.py").write_text("")
    for module in ("__init__.py", "run_workflow.py"):
        (source / module).write_text("")
    return source


def _pip(python, *args):
    command = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def _import_from(python, folder, env=None):
    run = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, cwd=folder, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip()


def test_pip_install_makes_the_model_package_importable_outside_the_checkout(tmp_path):
    source, target, elsewhere = _source(tmp_path), tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _pip(sys.executable, "--target", str(target), str(source))
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == ["hunyuan_model"]
    installed = _import_from(sys.executable, elsewhere, env={"PYTHONPATH": str(target), "PATH": ""})
    assert installed == str(target / "hunyuan_model" / "__init__.py")


def test_pip_install_editable_points_at_the_checkout(tmp_path):
    source, elsewhere = _source(tmp_path), tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    _pip(python, "-e", str(source))
    assert _import_from(python, elsewhere) == str(source / "hunyuan_model" / "__init__.py")
