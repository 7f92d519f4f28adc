"""`make check-real`'s checks: on the tiny model here (decoding against upstream's own generate, the loss check on a
model trained a few steps and on an untrained one), on the real weights where the Hub is reachable."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from conftest import ORIGINAL_ENV, ROOT
from test_inference_settings import aligned_checkpoint  # noqa: F401  (the 14-layer fixture)

from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS
from chatterbox_latam.testing.check_real import (
    BASES,
    CHANCE,
    check_decoding,
    check_loss,
    hub_unreachable,
)


@pytest.mark.parametrize("t3_model", ["v2", "v3"])
def test_decoding_check_holds_against_upstreams_generate(aligned_checkpoint, corpus, t3_model):  # noqa: F811
    """v2: 0.1.7's `generate` with its alignment analyzer; v3: the same loop as upstream main runs it. A likely stop
    token keeps both short (the untrained T3 would otherwise run upstream's 1000 steps)."""
    model = ChatterboxLatamTTS.from_pretrained(aligned_checkpoint, t3_model=t3_model)
    with torch.no_grad():
        model.tts.t3.speech_head.weight[model.tts.t3.hp.stop_speech_token] *= 8
    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    result = check_decoding(model, reference=reference)
    assert result.passed, result.detail
    assert result.figures["generation"] == t3_model and result.figures["our_tokens"] > 1


def test_loss_check_tells_a_trained_t3_from_chance(prepared, tiny_checkpoint, tmp_path):
    """The tiny model trained 20 steps on the corpus reads those clips far below chance; untrained, it sits at
    chance."""
    from chatterbox_latam.config import RECIPE_SECTIONS, Recipe, parse_recipe
    from chatterbox_latam.data.dataset import load_prepared, tokenize_dataset
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import load_text_tokenizer
    from chatterbox_latam.training.run import run_finetune

    prepared_dir = str(prepared[0].dataset_dir.parent)
    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, [
        "--config", str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"), "--base_model", str(tiny_checkpoint),
        "--prepared_dir", prepared_dir, "--checkpoint_dir", str(tmp_path), "--max_steps", "20", "--save_every",
        "100", "--train_s3gen", "false", "--eval_audio_samples", "0", "--report_to", "none"]))
    [trained] = run_finetune(recipe)
    rows = tokenize_dataset(load_prepared(prepared_dir), load_text_tokenizer(resolve_checkpoint(tiny_checkpoint)),
                            "es")["train"]
    untrained = check_loss(ChatterboxLatamTTS.from_pretrained(tiny_checkpoint).tts.t3, rows)
    learned = check_loss(ChatterboxLatamTTS.from_pretrained(trained.adapter_dir).tts.t3, rows)
    assert not untrained.passed and abs(untrained.figures["speech_loss"] - CHANCE) < 0.5, untrained.detail
    assert learned.passed, learned.detail


def test_offline_it_stops_at_once_and_says_where_to_run_it():
    env = {**ORIGINAL_ENV, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "chatterbox_latam.testing.check_real", "--base", "es-mx-latam"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and time.perf_counter() - start < 60
    assert "HF_HUB_OFFLINE" in result.stderr and "make check-real BASE=es-mx-latam" in result.stderr


def test_hub_check_asks_the_hub_for_the_base(hub):
    """The reachability check is the Hub client's own request: a Hub that serves `ResembleAI/chatterbox` passes,
    one that cannot be reached is named with the reason."""
    from huggingface_hub import HfApi

    HfApi().create_repo("ResembleAI/chatterbox", exist_ok=True)
    assert hub_unreachable(timeout=5, environ={"HF_ENDPOINT": hub.url}) is None
    reason = hub_unreachable(timeout=5, environ={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert reason and "http://127.0.0.1:9 cannot be reached" in reason


@pytest.mark.real_weights
@pytest.mark.parametrize("base", sorted(BASES))
def test_real_weights(base, tmp_path):
    """The real ResembleAI weights through all three checks (GPU recommended; ~3 GB per base)."""
    env = dict(ORIGINAL_ENV)  # the user's token, cache and offline setting, not the tests' local Hub
    reason = hub_unreachable(timeout=5, environ=env)
    if reason:
        pytest.skip(f"real weights need the Hugging Face Hub: {reason} (run `make check-real BASE={base}` where it "
                    "is reachable)")
    result = subprocess.run([sys.executable, "-m", "chatterbox_latam.testing.check_real", "--base", base, "--workdir",
                             str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
