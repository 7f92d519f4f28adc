"""The library's shape: each stage imports only the stages before it, nothing imports in a loop, every module
imports on its own, and the modules that describe recipes and facts do not pull in torch."""

from __future__ import annotations

import graphlib
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter import configuration
from importlinter.application.use_cases import lint_imports

import chatterbox_latam

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(chatterbox_latam.__file__).parent
MODULES = sorted(
    ".".join(("chatterbox_latam", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
)


def test_stages_import_only_earlier_stages(monkeypatch):
    """setup.cfg's import-linter contract: testing > training > hub > evaluation > synthesis > data > models >
    config > utils > constants, function-level imports included."""
    monkeypatch.chdir(ROOT)
    # import-linter's use case, not its CLI function: the CLI reconfigures logging and disables every logger.
    configuration.configure()
    assert lint_imports(config_filename="setup.cfg", cache_dir=None, no_logo=True)


def test_no_import_loop():
    graph = grimp.build_graph("chatterbox_latam", cache_dir=None)
    sorter = graphlib.TopologicalSorter(
        {module: graph.find_modules_directly_imported_by(module) for module in graph.modules})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import loop: {' -> '.join(error.args[1])}")


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter (an import that only works after another module was imported fails); the
    interpreters run a few at a time (most of an import is reading files)."""
    script = ("import os, subprocess, sys\n"
              "from concurrent.futures import ThreadPoolExecutor\n"
              "def fails(m):\n"
              "    return subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True).returncode\n"
              "with ThreadPoolExecutor(os.cpu_count() or 1) as pool:\n"
              "    codes = list(pool.map(fails, sys.argv[1:]))\n"
              "print(' '.join(m for m, code in zip(sys.argv[1:], codes) if code))")
    result = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True, check=True)
    assert len(MODULES) > 30 and result.stdout.split() == []


@pytest.mark.parametrize("module", ["chatterbox_latam.constants", "chatterbox_latam.config",
                                    "chatterbox_latam.utils", "chatterbox_latam.data.text"])
def test_light_modules_do_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_wheel_install_renders_a_model_card(trained_adapter, tmp_path):
    """`pip install .` (not editable) into a new environment: the card templates travel inside the package."""
    import shutil
    import sysconfig

    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "space", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    [wheel] = (tmp_path / "dist").glob("chatterbox_es_latam-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    script = ("import sys, chatterbox_latam\n"
              "from chatterbox_latam.hub.cards import render_model_card\n"
              "print(chatterbox_latam.__file__)\n"
              "print(render_model_card(sys.argv[1], 'latam/tiny-lora').content)\n")
    # The dependencies come from this environment's site-packages (not its .pth files, so not the editable
    # install of the repo): only the package itself is the wheel's.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    result = subprocess.run([str(python), "-c", script, str(trained_adapter)], capture_output=True, text=True,
                            cwd=tmp_path, env=env, check=True)
    location, card = result.stdout.split("\n", 1)
    assert Path(location).is_relative_to(venv)
    assert "pipeline_tag: text-to-speech" in card and "library_name: chatterbox-latam" in card
    assert "# tiny-lora" in card and "## Training" in card and "{{" not in card
