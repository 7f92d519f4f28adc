"""The package as a user installs it: a wheel built from the source (not the editable install of the repo) carries
the card templates of hub_cards/ and renders a card from them, and without the cpu-fast extra (llama-cpp-python and
gguf, as a GPU user installs it) imports every module and speaks on the tiny model."""

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


def run_installed(python: Path, script: str, *args: str, cwd: Path, site: Path | None = None) -> str:
    """`script` in the installed environment; returns its output. The dependencies come from `site`, by default this
    environment's site-packages (not its .pth files, so not the editable install of the repo): only the package is
    the wheel's."""
    env = {**os.environ, "PYTHONPATH": str(site or sysconfig.get_paths()["purelib"])}
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


CPU_FAST_EXTRA = ("llama_cpp", "gguf")
"""The top-level names llama-cpp-python and gguf install (the cpu-fast extra)."""


@pytest.fixture(scope="module")
def site_without_cpu_fast(tmp_path_factory) -> Path:
    """This environment's site-packages without the cpu-fast extra: a folder of links to everything else in it
    (the extra's packages and their metadata left out, so neither imports nor is found; no editable install)."""
    site = tmp_path_factory.mktemp("site-without-cpu-fast")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower().replace("-", "_")
        if not name.startswith((*CPU_FAST_EXTRA, "__editable__", "chatterbox_es_latam")):
            (site / entry.name).symlink_to(entry)
    return site


WITHOUT_CPU_FAST = """
import importlib, json, pkgutil, sys

import chatterbox_latam

modules = [m.name for m in pkgutil.walk_packages(chatterbox_latam.__path__, "chatterbox_latam.")
           if not m.name.endswith(".__main__")]  # a command line: it runs when imported
for name in modules:
    importlib.import_module(name)
imported_extra = [name for name in ("llama_cpp", "gguf") if name in sys.modules]

import soundfile

from chatterbox_latam.synthesis.cpu_fast.gguf import merged_gguf
from chatterbox_latam.synthesis.precision import available_modes
from chatterbox_latam.synthesis.tts import GUARD_VOICE, ChatterboxLatamTTS

model = ChatterboxLatamTTS.from_pretrained(sys.argv[1])
voice, rate = soundfile.read(GUARD_VOICE, dtype="float32")  # the wheel's own Spanish voice; 2 s of it suffice
wav = model.generate("Hola, buenos días.", (voice[: 2 * rate], rate), seed=0, max_new_tokens=20)
errors = []
for ask in (lambda: model.set_mode("llamacpp-q4_0"), lambda: merged_gguf("q4_0")):
    try:
        ask()
    except ImportError as error:
        errors.append(str(error))
print(json.dumps({"package": chatterbox_latam.__file__, "modules": modules, "imported_extra": imported_extra,
                  "samples": wav.shape[1], "sr": model.sr, "mode": model.mode, "modes": available_modes("cpu"),
                  "errors": errors}))
"""


def test_without_the_cpu_fast_extra_every_module_imports_and_the_tiny_model_speaks(
        wheel, installed, site_without_cpu_fast, tiny_checkpoint, tmp_path):
    """The wheel installed without llama-cpp-python and gguf (the cpu-fast extra, as a GPU user may install it):
    every module imports (the cpu_fast ones too: they reach for the extra only when it is used), the tiny model
    synthesises a sentence at fp32, `auto` leaves the llama.cpp modes out, and a llama.cpp mode or a GGUF asked for
    by name says what to install."""
    assert "chatterbox_latam/synthesis/cpu_fast/engine.py" in zipfile.ZipFile(wheel).namelist()
    output = run_installed(installed, WITHOUT_CPU_FAST, str(tiny_checkpoint), cwd=tmp_path, site=site_without_cpu_fast)
    report = json.loads(output.splitlines()[-1])  # (upstream's watermarker prints a line of its own)
    assert Path(report["package"]).is_relative_to(installed.parent.parent)
    assert len(report["modules"]) > 30 and "chatterbox_latam.synthesis.cpu_fast.engine" in report["modules"]
    assert report["imported_extra"] == []
    # 20 speech tokens at most: 40 ms of audio each at 24 kHz
    assert report["mode"] == "fp32" and report["sr"] == 24_000 and 0 < report["samples"] <= 20 * 960
    assert not [m for m in report["modes"] if m.startswith("llamacpp")] and "int4-wo" in report["modes"]
    assert len(report["errors"]) == 2
    assert all("pip install chatterbox-es-latam[cpu-fast]" in error for error in report["errors"])
