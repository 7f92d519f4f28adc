"""The evaluation harness end to end on the tiny model: systems side by side, report, plots, per accent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chatterbox_latam.evaluation.config import EvalConfig
from chatterbox_latam.evaluation.harness import evaluate_checkpoint, load_test_items
from chatterbox_latam.evaluation.metrics import normalize_spanish_for_wer


CAP = 100
"""Speech tokens per sentence (4 s): the untrained tiny T3 never stops, so every synthesis would run to the text's
budget (up to 10 s here) and every metric would read that much more audio."""


@pytest.fixture(scope="module")
def adapter(trained_adapter) -> Path:
    return trained_adapter


@pytest.mark.slow
def test_evaluation_compares_systems_and_writes_the_report(adapter, prepared, tmp_path):
    test_data = str(Path(prepared[0].dataset_dir).parent)
    items = load_test_items(test_data, max_samples=2)
    texts = [item.text for item in items]
    words = [len(normalize_spanish_for_wer(text).split()) for text in texts]

    def transcriber(wavs, sample_rate):  # the ASR step is passed in; the rest of the path is the real one
        """An ASR that errs: the first sentence's first word misheard, the second sentence not heard at all."""
        assert sample_rate in (24_000,) and len(wavs) == len(texts)
        return ["borrón " + texts[0].split(" ", 1)[1], ""]

    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=test_data,
                                             output_dir=str(tmp_path), compare_base=True, max_samples=2,
                                             targets_sentences=1, max_new_tokens=CAP),
                                  transcriber=transcriber)
    assert set(results["systems"]) == {"finetuned", "base", "ground_truth"}
    assert "microsoft/wavlm-base-plus-sv" in results["skipped"]["WavLM speaker similarity"]  # not on the local Hub
    assert "Blinorot/UTMOS-PyTorch" in results["skipped"]["UTMOS"]
    # the accent classifier is not on the local Hub either: skipped with the fix, the rest runs
    assert "--accent_model DIR" in results["skipped"]["accent identification"]
    for name, system in results["systems"].items():
        aggregate = system["aggregate"]
        assert aggregate["n"] == 2 and 1.0 <= aggregate["mos"] <= 5.0
        # corpus WER: one substitution and every word of the second sentence deleted
        assert aggregate["wer_spanish"] == pytest.approx((1 + words[1]) / (words[0] + words[1]))
        first, second = system["samples"][:2]
        assert first["wer_spanish"] == pytest.approx(1 / words[0]) and second["wer_spanish"] == 1.0
        assert ("rtf" in aggregate) == (name != "ground_truth")
        assert set(system["per_accent"]) == {item.accent for item in items}
    # the recordings are the ceiling: an untrained tiny model does not sound like the reference speaker
    truth, generated = results["systems"]["ground_truth"]["aggregate"], results["systems"]["finetuned"]["aggregate"]
    assert truth["speaker_sim"] > generated["speaker_sim"]

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["systems"]["finetuned"]["samples"][0]["text"] == texts[0]
    report = (tmp_path / "report.md").read_text()
    wer = f"{(1 + words[1]) / (words[0] + words[1]):.3f}"
    assert f"| wer_spanish | < 0.15 | {wer} FAIL | {wer} FAIL | {wer} |" in report
    assert "| speaker_sim | > 0.85 |" in report and "## Per accent" in report
    assert f"capped at {CAP} speech tokens" in report and saved["max_new_tokens"] == CAP
    for wav in (tmp_path / "audio" / "finetuned").glob("*.wav"):
        assert sf.info(wav).duration <= CAP / 25 + 0.5
    for plot in ("per_accent.png", "distributions.png"):
        assert (tmp_path / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "audio" / "finetuned").glob("*.wav"))) == 2

    # The full evaluation measures the project's targets, fine-tune and base, on the same sentences.
    targets = results["measured_targets"]
    assert set(targets["expressivity"]) == set(targets["cloning"]) == {"finetuned", "base"}
    for system in ("finetuned", "base"):
        table = targets["expressivity"][system]["by_exaggeration"]
        assert set(table) == {"0.25", "0.5", "0.9"} and all(np.isfinite(v) for v in table["0.5"].values())
        assert set(targets["expressivity"][system]["rises"]) == {"f0_spread", "energy_spread", "speaking_rate"}
        cloning = targets["cloning"][system]["by_reference_seconds"]
        assert 0 < cloning["3.0"]["reference_seconds"] <= cloning["10.0"]["reference_seconds"] <= 10.0
        # the untrained model clones no voice: below the recordings' ceiling at every reference length
        assert all(cloning[s]["speaker_sim"] < truth["speaker_sim"] for s in cloning), cloning
        assert set(targets["cloning"][system]["per_accent"]) == {items[0].accent}  # on the first sentence
    assert "## The project's targets: expressivity and cloning" in report and "| finetuned | 0.9 |" in report and "| base | 0.25 |" in report
    for plot in ("expressivity.png", "cloning.png"):
        assert (tmp_path / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    assert saved["measured_targets"] == targets


def test_seed_layout_test_data_offline_asr_and_fast_settings_beside_upstreams(adapter, corpus, tmp_path, hub):
    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=str(corpus),
                                             output_dir=str(tmp_path), metrics=["wer", "mos"], max_samples=1,
                                             mode="int4-wo", s3gen="meanflow", max_new_tokens=CAP))
    assert "openai/whisper-large-v3" in results["skipped"]["WER/CER"]
    assert "mos" in results["systems"]["finetuned"]["aggregate"]
    assert "wer_spanish" not in results["systems"]["finetuned"]["aggregate"]
    report = (tmp_path / "report.md").read_text()
    assert "WER/CER skipped" in report
    # a lower precision and the meanflow decoder are scored beside upstream's settings on the same sentence
    assert results["mode"] == "int4-wo" and "mos" in results["systems"]["finetuned_fp32"]["aggregate"]
    assert results["s3gen"] == "meanflow" and "meanflow S3Gen decoder" in results["s3gen_changes"]
    assert "`finetuned` ran at T3 int4-wo, meanflow S3Gen decoder" in report


def test_guidance_off_is_scored_beside_upstreams_guidance(adapter, corpus, tmp_path):
    """cfg_weight 0 (one backbone row, twice as fast) changes what T3 decodes: the fine-tune at 0.5 is scored
    beside it on the same sentence, voice and seed."""
    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=str(corpus),
                                             output_dir=str(tmp_path), metrics=["rtf"], max_samples=1,
                                             cfg_weight=0.0, max_new_tokens=CAP))
    assert results["cfg_weight"] == 0.0 and set(results["systems"]) >= {"finetuned", "finetuned_fp32"}
    (guided,) = (tmp_path / "audio" / "finetuned_fp32").glob("*.wav")
    unguided = tmp_path / "audio" / "finetuned" / guided.name
    assert unguided.read_bytes() != guided.read_bytes()
    assert "`finetuned` ran at T3 fp32, cfg_weight 0.0;" in (tmp_path / "report.md").read_text()


def test_a_token_cap_that_is_not_positive_is_refused_before_any_model_loads():
    with pytest.raises(ValueError, match=r"max_new_tokens 0: give a positive number of speech tokens"):
        EvalConfig(checkpoint="adapter", test_data="data", output_dir="out", max_new_tokens=0)


def test_adapter_loads_by_hub_repo_id(adapter, hub):
    from huggingface_hub import HfApi
    from peft import PeftModel

    from chatterbox_latam import ChatterboxLatamTTS

    HfApi().create_repo("latam/tiny-adapter")
    HfApi().upload_folder(repo_id="latam/tiny-adapter", folder_path=str(adapter))
    model = ChatterboxLatamTTS.from_pretrained("latam/tiny-adapter")
    assert isinstance(model.tts.t3, PeftModel) and model.language == "es"


def test_more_systems_side_by_side_and_no_sentence_spoken_from_its_own_audio(adapter, tiny_checkpoint, corpus,
                                                                            tmp_path):
    """`compare` scores any other model beside the fine-tune (here the tiny base as a folder, as a language pack
    would be by repo id); a test sentence whose speaker has no other clip is left out and counted."""
    import shutil

    data = tmp_path / "data"
    (data / "audio").mkdir(parents=True)
    clips = sorted((corpus / "audio" / "speaker_001").glob("*.wav"))[:2] + [
        sorted((corpus / "audio" / "speaker_002").glob("*.wav"))[0]]
    lines = ["audio_path,transcript,speaker_id"]
    for i, (clip, speaker) in enumerate(zip(clips, ["pair", "pair", "alone"], strict=True)):
        shutil.copy(clip, data / "audio" / f"{i}.wav")
        lines.append(f"audio/{i}.wav,Hola número {i}.,{speaker}")
    (data / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=str(data),
                                             output_dir=str(tmp_path / "eval"), metrics=["rtf"],
                                             compare=[str(tiny_checkpoint)], max_new_tokens=CAP))
    assert set(results["systems"]) == {"finetuned", tiny_checkpoint.name, "ground_truth"}
    assert results["n_sentences"] == 2 and results["sentences_without_reference"] == ["2"]
    assert "1 test sentences were left out" in (tmp_path / "eval" / "report.md").read_text()


@pytest.mark.slow
def test_both_alignment_settings_are_scored_when_the_adapter_changes_the_watched_attention(tmp_path, corpus):
    """Upstream's heuristics read attention maps of layers 9, 12 and 13: with LoRA on T3's attention there, the
    evaluation scores the fine-tune without them (its synthesis default: the adapter moved the attention they read)
    and with them, on the same sentences and seed, and the report says which is which and why."""
    import shutil

    from safetensors.torch import save_file
    from test_inference_settings import ALIGNED

    from chatterbox_latam.models.config import ModelConfig
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import build_t3, load_t3
    from chatterbox_latam.models.lora import add_t3_lora, save_adapters
    from chatterbox_latam.testing.tiny_model import build_tiny_checkpoint

    base = build_tiny_checkpoint(tmp_path / "base")
    config = json.loads((base / "config.json").read_text())
    config["t3"] = {"llama": ALIGNED}
    (base / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in build_t3(config).state_dict().items()},
              str(base / "t3_mtl23ls_v2.safetensors"))
    t3 = add_t3_lora(load_t3(resolve_checkpoint(base)), ModelConfig(base_model=str(base), lora_rank=4))
    adapter = save_adapters(tmp_path / "adapter", t3, None, {"base_model": str(base), "model_variant": "multilingual"})
    data = tmp_path / "data"
    shutil.copytree(corpus, data, ignore=shutil.ignore_patterns("speaker_00[2-6]"))
    with open(data / "metadata.csv", encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["speaker_id"] == "speaker_001"][:2]
    with open(data / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        # short sentences: an untrained T3 decodes to its token budget, which grows with the text
        writer.writerows({**row, "transcript": "Hola."} for row in rows)
    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=str(data),
                                             output_dir=str(tmp_path / "eval"), metrics=["rtf"], max_samples=1,
                                             max_new_tokens=CAP))
    assert set(results["systems"]) == {"finetuned", "finetuned_alignment_on", "ground_truth"}
    assert "alignment heuristics off" in results["decoding"]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "`finetuned` ran without upstream's alignment heuristics, as this model's synthesis does" in report


def test_a_dataset_without_a_test_split_is_refused_and_another_split_is_scored_knowingly(adapter, prepared,
                                                                                          tmp_path):
    """Without a `test` split the evaluation refuses, naming the splits there are and `--split` (it used to score the
    training rows silently); a split chosen knowingly is scored, and the report's first line says which."""
    from conftest import run_command

    no_test = tmp_path / "no-test"
    dataset = prepared[1]
    type(dataset)({name: split for name, split in dataset.items() if name != "test"}).save_to_disk(str(no_test))
    refused = run_command("evaluate", "--checkpoint", adapter, "--test_data", no_test, "--output_dir",
                          tmp_path / "eval", "--metric", "rtf", "--max_samples", "1")
    assert refused.returncode != 0
    assert "has no 'test' split (its splits: train, validation)" in refused.stderr and "--split" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "eval" / "results.json").exists()

    results = evaluate_checkpoint(EvalConfig(checkpoint=str(adapter), test_data=str(no_test), split="validation",
                                             output_dir=str(tmp_path / "eval"), metrics=["rtf"], max_samples=1,
                                             max_new_tokens=CAP))
    assert results["split"] == "validation"
    first = (tmp_path / "eval" / "report.md").read_text().splitlines()[0]
    assert first.startswith("**Scored on the `validation` split, not a held-out test split**")
