"""The library's shape: each stage imports only the stages before it, nothing imports in a loop, every module
imports on its own, and the modules that describe recipes and facts do not pull in torch."""

from __future__ import annotations

import graphlib
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
    for path in PACKAGE.rglob("*.py") if path.name != "__main__.py"  # `python -m` entry points run on import
)


def test_stages_import_only_earlier_stages(monkeypatch):
    """setup.cfg's import-linter contract: cli > testing > training > hub > evaluation > synthesis > data > models >
    parser > compat > utils > constants, function-level imports included."""
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
    """Each module imported with none of the project's modules loaded before it (an import that only works after
    another of ours was imported fails), in one interpreter: the project's modules are dropped from `sys.modules`
    before each import, the third-party ones (torch, transformers: most of an import's time) are kept."""
    script = ("import importlib, sys, traceback\n"
              "failed = []\n"
              "for name in sys.argv[1:]:\n"
              "    for loaded in [m for m in sys.modules if m == 'chatterbox_latam' or m.startswith('chatterbox_latam.')]:\n"
              "        del sys.modules[loaded]\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except Exception:\n"
              "        failed.append(name + ': ' + traceback.format_exc(limit=1).splitlines()[-1])\n"
              "print('\\n'.join(failed))")
    result = subprocess.run([sys.executable, "-c", script, *MODULES], capture_output=True, text=True, check=True)
    assert len(MODULES) > 30 and result.stdout.strip() == "", result.stdout


@pytest.mark.parametrize("module", ["chatterbox_latam.constants", "chatterbox_latam.parser",
                                    "chatterbox_latam.data.config", "chatterbox_latam.synthesis.config",
                                    "chatterbox_latam.utils", "chatterbox_latam.data.text"])
def test_light_modules_do_not_import_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"

