"""The package as a user installs it: a wheel built from the source (not the editable install of the repo) carries
the card templates of hub_cards/ and renders a card from them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel .` builds, offline, from a copy of the source (a build in the repo would leave build/
    there, whose stale files a later build copies into its wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "space", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp / "dist"), str(source)], check=True, capture_output=True)
    [built] = (tmp / "dist").glob("chatterbox_es_latam-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A new environment holding the wheel alone (no dependencies): its python."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return python


def run_installed(python: Path, script: str, *args: str, cwd: Path) -> str:
    """`script` in the installed environment; returns its output. The dependencies come from this environment's
    site-packages (not its .pth files, so not the editable install of the repo): only the package is the wheel's."""
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    done = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_wheel_carries_the_card_templates_and_renders_a_card(wheel, installed, tmp_path):
    """The templates at the repo's top level (hub_cards/) are in the wheel as `chatterbox_latam.hub_cards`, and an
    installed wheel renders an adapter's model card from them."""
    names = zipfile.ZipFile(wheel).namelist()
    assert {"chatterbox_latam/hub_cards/model_card.md", "chatterbox_latam/hub_cards/dataset_card.md"} <= set(names)
    assert not [n for n in names if n.startswith("hub_cards/")]  # inside the package, not a top-level one
    # an adapter folder as training writes it, without weights: all a card reads
    adapter = tmp_path / "adapter"
    (adapter / "t3").mkdir(parents=True)
    (adapter / "t3" / "adapter_config.json").write_text("{}", encoding="utf-8")
    (adapter / "adapter.json").write_text(json.dumps({"base_model": "ResembleAI/chatterbox", "accent": "mx",
                                                      "recipe": {"LoRA rank": 16}}), encoding="utf-8")
    script = ("import sys, chatterbox_latam\n"
              "from chatterbox_latam.hub.cards import render_model_card\n"
              "print(chatterbox_latam.__file__)\n"
              "print(render_model_card(sys.argv[1], 'latam/tiny-lora').content)\n")
    location, card = run_installed(installed, script, str(adapter), cwd=tmp_path).split("\n", 1)
    assert Path(location).is_relative_to(installed.parent.parent)
    assert "pipeline_tag: text-to-speech" in card and "library_name: chatterbox-latam" in card
    # the template's own text, filled in
    assert "# tiny-lora" in card and "LoRA adapters that adapt [Chatterbox TTS]" in card
    assert "## Training" in card and "LoRA rank" in card and "{{" not in card and "{%" not in card
