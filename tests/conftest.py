"""Shared fixtures: the local Hub, the tiny checkpoint, the espeak-ng corpus, and one prepared dataset.

The Hub-protocol server starts before anything imports `huggingface_hub` (which reads `HF_ENDPOINT` once), so
every test, and every subprocess a test starts, talks to it instead of the real Hub: repos the tests did not
create answer 404 at once, which is also what keeps the multilingual tokenizer from retrying for ~28 s.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_server import LocalHub  # noqa: E402

_HUB: LocalHub | None = None
ORIGINAL_ENV = dict(os.environ)
"""The environment before the tests pointed the Hub clients at the local server: the `real_weights` tests run the
real Hub with it (the user's token, cache and offline setting)."""


def pytest_configure(config):
    global _HUB
    _HUB = LocalHub().__enter__()
    home = tempfile.mkdtemp(prefix="hf-home-")
    os.environ.update(
        HF_ENDPOINT=_HUB.url, HF_HUB_DISABLE_XET="1", HF_HOME=home, HF_TOKEN="hf_local_test_token",
        HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
        CHATTERBOX_LATAM_CACHE=os.path.join(home, "chatterbox_latam"),  # the GGUFs of the llama.cpp modes
    )
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(name, None)
    if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in ORIGINAL_ENV:
        # `make test` runs a worker per core: one thread each (their processes too) instead of each taking all cores
        os.environ["OMP_NUM_THREADS"] = "1"
    config._hf_home = home


def pytest_unconfigure(config):
    if _HUB is not None:
        _HUB.__exit__(None, None, None)
    shutil.rmtree(getattr(config, "_hf_home", ""), ignore_errors=True)


TINY_LLAMA = {"t3": {"llama": {"num_hidden_layers": 2, "intermediate_size": 1024}}}
"""A 2-layer T3 backbone: small enough to decode hundreds of steps in a test."""


@pytest.fixture(scope="module")
def t3():
    """A small random T3. Upstream's multilingual inference hooks layers 9-13 (alignment heuristics), so a 2-layer
    T3 is compared with upstream at the English configuration, whose inference has no such hook; the decoding is
    the same."""
    import torch

    from chatterbox_latam.models.loading import build_t3

    torch.manual_seed(0)
    return build_t3(TINY_LLAMA, multilingual=False).eval()


def t3_inputs(t3):
    """Seeded text tokens and a conditioning factory for `t3` (a fresh T3Cond per call: upstream caches the prompt
    embedding on it)."""
    import torch
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    g = torch.Generator().manual_seed(1)
    text = torch.randint(1, 600, (1, 20), generator=g)
    text[0, 0], text[0, -1] = t3.hp.start_text_token, t3.hp.stop_text_token
    emb = torch.randn(1, 256, generator=g)
    prompt = torch.randint(0, 6561, (1, 150), generator=torch.Generator().manual_seed(2))

    def cond():
        return T3Cond(speaker_emb=emb / emb.norm(), cond_prompt_speech_tokens=prompt,
                      emotion_adv=0.5 * torch.ones(1, 1, 1))

    return text, cond


@pytest.fixture(scope="session")
def hub() -> LocalHub:
    return _HUB


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Path:
    """A folder for the files one test module shares, removed when its tests are done: a tiny checkpoint folder
    still holds about 1.4 GB (upstream's S3 tokenizer in both S3Gen files, T3 at upstream's 1024 width), and a run
    keeps no copy it no longer needs."""
    path = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from chatterbox_latam.testing.tiny_model import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from chatterbox_latam.testing.espeak_corpus import generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("corpora") / "espeak", utterances_per_speaker=8)


def make_configs(checkpoint: Path, input_path: Path | str, prepared_dir: Path, **data):
    from chatterbox_latam.data.config import DataConfig
    from chatterbox_latam.models.config import ModelConfig

    model = ModelConfig(base_model=str(checkpoint), train_s3gen=data.pop("train_s3gen", False))
    return model, DataConfig(input_path=str(input_path), prepared_dir=str(prepared_dir), **data)


@pytest.fixture(scope="session")
def prepared(tiny_checkpoint, corpus, tmp_path_factory):
    """The espeak corpus prepared once with S3Gen features; returns (result, DatasetDict)."""
    from chatterbox_latam.data.dataset import load_prepared
    from chatterbox_latam.data.prepare import prepare_dataset

    model, data = make_configs(tiny_checkpoint, corpus, tmp_path_factory.mktemp("prepared") / "out",
                               train_s3gen=True, feature_batch_seconds=40)
    result = prepare_dataset(model, data, progress=False)
    return result, load_prepared(data.prepared_dir)


@pytest.fixture(scope="session")
def trained_adapter(prepared, tiny_checkpoint, tmp_path_factory, hub) -> Path:
    """T3 + S3Gen adapters trained 3 steps on the prepared corpus, pushed by the Trainer to the local Hub
    (`latam/tiny-lora`) at step 2 and at the end: one training shared by every test that only reads an adapter."""
    from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe
    from chatterbox_latam.parser import parse_recipe
    from chatterbox_latam.training.run import run_finetune

    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, [
        "--config", str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"), "--base_model", str(tiny_checkpoint),
        "--prepared_dir", str(Path(prepared[0].dataset_dir).parent),
        "--checkpoint_dir", str(tmp_path_factory.mktemp("trained")), "--eval_audio_samples", "0",
        "--report_to", "none", "--max_steps", "3", "--save_every", "2", "--train_s3gen", "true",
        "--batch_size", "2", "--push_to_hub", "true", "--hub_model_id", "latam/tiny-lora"]))
    [result] = run_finetune(recipe)
    return result.adapter_dir


@pytest.fixture(scope="session")
def accent_adapters(prepared, tiny_checkpoint, tmp_path_factory) -> Path:
    """T3 adapters for mx and ar (3 steps each) in one folder: `mx/final`, `ar/final`."""
    from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe
    from chatterbox_latam.parser import parse_recipe
    from chatterbox_latam.training.run import run_finetune

    out = tmp_path_factory.mktemp("accents")
    run_finetune(Recipe(*parse_recipe(RECIPE_SECTIONS, [
        "--config", str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"), "--base_model", str(tiny_checkpoint),
        "--prepared_dir", str(Path(prepared[0].dataset_dir).parent), "--checkpoint_dir", str(out),
        "--eval_audio_samples", "0", "--report_to", "none", "--max_steps", "3", "--save_every", "10",
        "--train_s3gen", "false", "--adapters", "per_accent", "--adapter_accents", "mx", "ar"])))
    return out


def run_command(name: str, *args) -> subprocess.CompletedProcess:
    """`chatterbox-latam NAME ARGS...` run in this interpreter, through the `main(argv)` the console script and the
    training/ scripts call: the exit status, stdout and stderr (its log lines included) that a process would give,
    without a new interpreter's seconds of imports. Where a test needs a process of its own (a signal, a kill,
    `accelerate launch`, the scripts as files), it starts one; test_cli runs each training/ script."""
    from chatterbox_latam.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, argv0 = logging.getLogger(), sys.argv[0]
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([name, *map(str, args)])
            except SystemExit as exit:  # as the interpreter reports it: a message goes to stderr, status 1
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
                code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        sys.argv[0] = argv0
    return subprocess.CompletedProcess([name, *map(str, args)], code, out.getvalue(), err.getvalue())


def seed_folder(corpus: Path, dest: Path, speakers: list[tuple[str, str]], clips=(1, 2)) -> Path:
    """A small test folder in the folder layout: `clips` of each (speaker, accent) of the espeak corpus, the
    transcript "Hola número N." for clip N, files named SPEAKER_N.wav."""
    import shutil

    (dest / "audio").mkdir(parents=True)
    lines = ["audio_path,transcript,speaker_id,accent"]
    for speaker, accent in speakers:
        for n in clips:
            shutil.copy(corpus / "audio" / speaker / f"audio_{n:03d}.wav", dest / "audio" / f"{speaker}_{n}.wav")
            lines.append(f"audio/{speaker}_{n}.wav,Hola número {n}.,{speaker},{accent}")
    (dest / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest
