"""The evaluation harness end to end on the tiny model: systems side by side, report, plots, per accent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatterbox_latam.config import RECIPE_SECTIONS
from chatterbox_latam.evaluation import EvalConfig, evaluate_checkpoint, load_test_items
from chatterbox_latam.finetune import Recipe, run_finetune
from chatterbox_latam.recipe import parse_recipe
from conftest import ROOT


@pytest.fixture(scope="module")
def adapter(prepared, tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapter")
    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, [
        "--config", str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"), "--base_model", str(tiny_checkpoint),
        "--prepared_dir", str(Path(prepared[0].dataset_dir).parent), "--checkpoint_dir", str(out),
        "--max_steps", "2", "--save_every", "2", "--train_s3gen", "false", "--eval_audio_samples", "0",
        "--report_to", "none"]))
    [result] = run_finetune(recipe)
    return result.adapter_dir


def test_evaluation_compares_systems_and_writes_the_report(adapter, prepared, tmp_path):
    test_data = str(Path(prepared[0].dataset_dir).parent)
    items = load_test_items(test_data, max_samples=2)
    texts = [item.text for item in items]

    def transcriber(wavs, sample_rate):  # the ASR step is passed in; the rest of the path is the real one
        assert sample_rate in (24_000,) and len(wavs) == len(texts)
        return list(texts)

    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=test_data,
                                             output_dir=str(tmp_path), compare_base=True, max_samples=2),
                                  transcriber=transcriber)
    assert set(results["systems"]) == {"finetuned", "base", "ground_truth"}
    assert "microsoft/wavlm-base-plus-sv" in results["skipped"]["WavLM speaker similarity"]  # not on the local Hub
    assert "Blinorot/UTMOS-PyTorch" in results["skipped"]["UTMOS"]
    for name, system in results["systems"].items():
        aggregate = system["aggregate"]
        assert aggregate["n"] == 2 and aggregate["wer_spanish"] == 0.0 and 1.0 <= aggregate["mos"] <= 5.0
        assert ("rtf" in aggregate) == (name != "ground_truth")
        assert set(system["per_accent"]) == {item.accent for item in items}
    # the recordings are the ceiling: an untrained tiny model does not sound like the reference speaker
    truth, generated = results["systems"]["ground_truth"]["aggregate"], results["systems"]["finetuned"]["aggregate"]
    assert truth["speaker_sim"] > generated["speaker_sim"]

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["systems"]["finetuned"]["samples"][0]["text"] == texts[0]
    report = (tmp_path / "report.md").read_text()
    assert "| wer_spanish | < 0.15 | 0.000 pass | 0.000 pass | 0.000 |" in report
    assert "| speaker_sim | > 0.85 |" in report and "## Per accent" in report
    for plot in ("per_accent.png", "distributions.png"):
        assert (tmp_path / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "audio" / "finetuned").glob("*.wav"))) == 2


def test_seed_layout_test_data_offline_asr_and_a_fast_mode_beside_fp32(adapter, corpus, tmp_path, hub):
    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=str(corpus),
                                             output_dir=str(tmp_path), metrics=["wer", "mos"], max_samples=1,
                                             mode="int4-wo"))
    assert "openai/whisper-large-v3" in results["skipped"]["WER/CER"]
    assert "mos" in results["systems"]["finetuned"]["aggregate"]
    assert "wer_spanish" not in results["systems"]["finetuned"]["aggregate"]
    report = (tmp_path / "report.md").read_text()
    assert "WER/CER skipped" in report
    # a lower precision is scored beside fp32 on the same sentence
    assert results["mode"] == "int4-wo" and "mos" in results["systems"]["finetuned_fp32"]["aggregate"]
    assert "finetuned_fp32" in report


def test_adapter_loads_by_hub_repo_id(adapter, hub):
    from huggingface_hub import HfApi
    from peft import PeftModel

    from chatterbox_latam import ChatterboxLatamTTS

    HfApi().create_repo("latam/tiny-adapter")
    HfApi().upload_folder(repo_id="latam/tiny-adapter", folder_path=str(adapter))
    model = ChatterboxLatamTTS.from_pretrained("latam/tiny-adapter")
    assert isinstance(model.tts.t3, PeftModel) and model.language == "es"
