"""Merge and publish: merged == adapter, `ChatterboxLatamTTS.from_pretrained` from folders and by repo id, several
accent adapters chosen per call, cards with valid metadata, pushes through the real client, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_command

from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe
from chatterbox_latam.parser import parse_recipe
from chatterbox_latam.hub.cards import render_model_card
from chatterbox_latam.hub.push import HubError, push_model
from chatterbox_latam.models.merge import MERGE_TOLERANCE
from chatterbox_latam.models.probes import compare_outputs, probe_outputs
from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS
from chatterbox_latam.training.run import run_finetune

TINY = str(ROOT / "training" / "recipes" / "tiny_cpu.yaml")
TEXT = "Hola, ¿cómo estás? Son las 10:30."


def _train(prepared, checkpoint, out: Path, *overrides) -> list:
    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, [
        "--config", TINY, "--base_model", str(checkpoint), "--prepared_dir", str(Path(prepared[0].dataset_dir).parent),
        "--checkpoint_dir", str(out), "--eval_audio_samples", "0", "--report_to", "none", *overrides]))
    return run_finetune(recipe)


@pytest.fixture(scope="module")
def shared_adapter(trained_adapter) -> Path:
    """T3 + S3Gen adapters, 3 steps, pushed by the Trainer to the local Hub at step 2 and at the end (conftest)."""
    return trained_adapter


@pytest.fixture(scope="module")
def reference_wav(corpus) -> Path:
    return next((corpus / "audio").rglob("*.wav"))


def test_merged_model_equals_the_adapter_model(shared_adapter, reference_wav, tmp_path):
    out = tmp_path / "merged"
    run = run_command("merge", "--adapter", str(shared_adapter), "--output_dir", str(out),
               "--default_voice", str(reference_wav))
    assert run.returncode == 0, run.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    # no pickles for tiny; the meanflow S3Gen the tiny base ships comes along
    assert files == ["conds.safetensors", "config.json", "grapheme_mtl_merged_expanded_v1.json",
                     "s3gen.safetensors", "s3gen_meanflow.safetensors", "t3_mtl23ls_v2.safetensors",
                     "ve.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["adapted"] == ["t3", "s3gen"]
    assert max(config["merge_check"]["max_relative_difference"].values()) <= MERGE_TOLERANCE

    adapter = ChatterboxLatamTTS.from_pretrained(shared_adapter)
    merged = ChatterboxLatamTTS.from_pretrained(out)
    assert not hasattr(merged.tts.t3, "peft_config") and hasattr(adapter.tts.t3, "peft_config")
    differences = compare_outputs(probe_outputs(adapter.tts), probe_outputs(merged.tts))
    assert max(differences.values()) <= MERGE_TOLERANCE, differences
    # the merge changed the base: the adapter mattered
    base = ChatterboxLatamTTS.from_pretrained(json.loads((shared_adapter / "adapter.json").read_text())["base_model"])
    assert min(compare_outputs(probe_outputs(adapter.tts), probe_outputs(base.tts)).values()) > 1e-3

    a = adapter.generate(TEXT, audio_prompt_path=reference_wav, seed=3, max_new_tokens=40)
    m = merged.generate(TEXT, audio_prompt_path=reference_wav, seed=3, max_new_tokens=40)
    assert a.shape == m.shape and a.shape[0] == 1 and a.shape[1] > 0 and merged.sr == 24_000
    assert torch.allclose(a, m, atol=1e-3), (a - m).abs().max()
    # the default voice is the reference the merge was given
    d = merged.generate(TEXT, seed=3, max_new_tokens=40)
    assert torch.allclose(d, m, atol=1e-5)


def test_bfloat16_merge_is_cast_after_an_fp32_merge(shared_adapter, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "merged-bf16"
    run = run_command("merge", "--adapter", str(shared_adapter), "--output_dir", str(out), "--dtype", "bfloat16")
    assert run.returncode == 0, run.stderr[-3000:]
    with safe_open(str(out / "t3_mtl23ls_v2.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    check = json.loads((out / "config.json").read_text())["merge_check"]
    assert max(check["max_relative_difference"].values()) <= MERGE_TOLERANCE  # the fp32 merge itself
    assert 0 < max(check["cast_difference"].values()) < 0.05  # what bf16 rounding costs, recorded
    with pytest.raises(ValueError, match="no default voice"):
        ChatterboxLatamTTS.from_pretrained(out).generate(TEXT)


@pytest.mark.slow
def test_per_accent_adapters_load_together_and_merge_one_model_each(accent_adapters, reference_wav, tmp_path):
    """mx and ar adapters in one model: a call with an accent runs that accent's adapter (T3's probe logits right
    after it are that adapter's, loaded alone, and apart from the other's by more than any merge may move them) and
    speaks, sample for sample, what that adapter alone speaks at the same seed; merge.py writes one model per
    accent, each predicting as its own adapter does (within the merge tolerance) and not as the other's, and
    speaking as its adapter does. (Three steps apart, the two accents' sampled tokens may still agree: the logits
    tell them apart.)"""
    model = ChatterboxLatamTTS.from_pretrained(accent_adapters)
    assert model.accents == ["ar", "mx"]
    accents = ("mx", "ar")
    alone = {a: ChatterboxLatamTTS.from_pretrained(accent_adapters / a / "final") for a in accents}
    probes = {a: probe_outputs(alone[a].tts) for a in accents}
    speak = dict(audio_prompt_path=reference_wav, seed=1, max_new_tokens=30)
    together = {}
    for accent, other in (("mx", "ar"), ("ar", "mx"), ("mx", "ar")):  # mx again: switching back works too
        together[accent] = model.generate(TEXT, accent=accent, **speak)
        active = probe_outputs(model.tts)  # the adapter the call ran, still active
        assert compare_outputs(probes[accent], active)["t3"] <= MERGE_TOLERANCE, accent
        assert compare_outputs(probes[other], active)["t3"] > 100 * MERGE_TOLERANCE, accent
        assert torch.allclose(alone[accent].generate(TEXT, **speak), together[accent], atol=1e-5), accent
    with pytest.raises(ValueError, match=r"adapters for \['ar', 'mx'\]"):
        model.generate(TEXT, audio_prompt_path=reference_wav, accent="co")

    run = run_command("merge", "--adapter", f"mx={accent_adapters / 'mx' / 'final'}",
               "--adapter", f"ar={accent_adapters / 'ar' / 'final'}", "--output_dir", str(tmp_path / "merged"))
    assert run.returncode == 0, run.stderr[-3000:]
    for accent, other in (("mx", "ar"), ("ar", "mx")):
        merged = ChatterboxLatamTTS.from_pretrained(tmp_path / "merged" / accent)
        assert merged.accent == accent and not hasattr(merged.tts.t3, "peft_config")
        outputs = probe_outputs(merged.tts)
        assert max(compare_outputs(probes[accent], outputs).values()) <= MERGE_TOLERANCE
        assert compare_outputs(probes[other], outputs)["t3"] > 100 * MERGE_TOLERANCE
        assert torch.allclose(merged.generate(TEXT, **speak), together[accent], atol=1e-3), accent
    bad = run_command("merge", "--adapter", str(accent_adapters / "mx" / "final"), "--adapter", "x", "--output_dir",
               str(tmp_path / "bad"))
    assert bad.returncode != 0 and "name each one" in bad.stderr and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_full_size_merge_also_loads_with_upstream_from_local(tmp_path):
    """Upstream sizes (random weights): the merged folder holds upstream's file layout as well as safetensors."""
    import shutil

    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    from chatterbox_latam.models.config import ModelConfig
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import load_t3
    from chatterbox_latam.models.lora import add_t3_lora, save_adapters
    from chatterbox_latam.testing.tiny_model import build_tiny_checkpoint

    try:
        base = build_tiny_checkpoint(tmp_path / "full", full_size=True, meanflow=False)  # 1 GB less
        t3 = add_t3_lora(load_t3(resolve_checkpoint(base)), ModelConfig(base_model=str(base), lora_rank=4))
        with torch.no_grad():  # a trained-looking adapter: LoRA B away from its zero init
            for name, parameter in t3.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.01, generator=torch.Generator().manual_seed(0))
        save_adapters(tmp_path / "adapter", t3, None, {"base_model": str(base), "language": "es", "accent": "mx"})
        del t3
        run = run_command("merge", "--adapter", str(tmp_path / "adapter"), "--output_dir", str(tmp_path / "merged"))
        assert run.returncode == 0, run.stderr[-3000:]
        assert "upstream layout too" in run.stdout
        assert {"ve.pt", "s3gen.pt", "t3_mtl23ls_v2.safetensors"} <= {p.name for p in (tmp_path / "merged").iterdir()}
        upstream = ChatterboxMultilingualTTS.from_local(tmp_path / "merged", "cpu")
        ours = ChatterboxLatamTTS.from_pretrained(tmp_path / "merged")
        for (name, a), (other, b) in zip(upstream.t3.state_dict().items(), ours.tts.t3.state_dict().items(),
                                         strict=True):
            assert name == other and torch.equal(a, b), name
    finally:  # ~6 GB of full-size weights: do not leave them to pytest's retention of old temp folders
        shutil.rmtree(tmp_path, ignore_errors=True)


# -- the Hub --------------------------------------------------------------------------------------------------------
def test_trainer_pushes_adapters_with_a_card_and_they_load_by_repo_id(shared_adapter, hub, reference_wav):
    from huggingface_hub import ModelCard

    files = hub.files("latam/tiny-lora")
    assert {"adapter.json", "t3/adapter_model.safetensors", "s3gen/adapter_model.safetensors", "README.md"} <= set(files)
    assert not any(name.startswith(("checkpoint-", "last-checkpoint", "runs/")) for name in files)
    pushed = files["t3/adapter_model.safetensors"]
    assert pushed == (shared_adapter / "t3" / "adapter_model.safetensors").read_bytes()  # the final one
    card = ModelCard.load("latam/tiny-lora")
    assert card.data.pipeline_tag == "text-to-speech" and card.data.language == ["es"]
    assert "lora" in card.data.tags and "ChatterboxLatamTTS.from_pretrained(\"latam/tiny-lora\"" in card.text

    model = ChatterboxLatamTTS.from_pretrained("latam/tiny-lora")
    assert hasattr(model.tts.t3, "peft_config") and hasattr(model.tts.s3gen.flow, "peft_config")
    local = ChatterboxLatamTTS.from_pretrained(shared_adapter)
    assert max(compare_outputs(probe_outputs(local.tts), probe_outputs(model.tts)).values()) == 0.0


@pytest.mark.pipeline
def test_merged_model_round_trip_with_evaluation_in_the_card(shared_adapter, prepared, reference_wav, hub, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from chatterbox_latam.evaluation.config import EvalConfig
    from chatterbox_latam.evaluation.harness import evaluate_checkpoint

    merged = tmp_path / "merged"
    assert run_command("merge", "--adapter", str(shared_adapter), "--output_dir", str(merged),
                "--default_voice", str(reference_wav)).returncode == 0
    evaluate_checkpoint(EvalConfig(checkpoint=str(merged), test_data=str(Path(prepared[0].dataset_dir).parent),
                                   output_dir=str(tmp_path / "eval"), metrics=["speaker_sim", "mos", "rtf"],
                                   max_samples=1, max_new_tokens=100))
    run = run_command("push", "--repo_id", "latam/tiny-merged", "--what", "merged", "--path", str(merged),
               "--results", str(tmp_path / "eval" / "results.json"), "--base_model_id", "ResembleAI/chatterbox")
    assert run.returncode == 0, run.stderr[-3000:]
    files = hub.files("latam/tiny-merged")
    assert {"t3_mtl23ls_v2.safetensors", "conds.safetensors", "README.md", "evaluation/results.json",
            "evaluation/report.md"} <= set(files)

    card = ModelCard.load("latam/tiny-merged")
    data = card.data.to_dict()
    assert data["base_model"] == "ResembleAI/chatterbox" and data["base_model_relation"] == "merge"
    assert data["library_name"] == "chatterbox-latam" and data["license"] == "mit"
    _, results = model_index_to_eval_results(data["model-index"])
    results_json = json.loads((tmp_path / "eval" / "results.json").read_text())
    by_type = {r.metric_type: r.metric_value for r in results}
    assert by_type["speaker_similarity"] == pytest.approx(results_json["systems"]["finetuned"]["aggregate"]["speaker_sim"],
                                                          abs=1e-4)
    assert {"dnsmos", "rtf"} <= set(by_type) and all(r.task_type == "text-to-speech" for r in results)

    model = ChatterboxLatamTTS.from_pretrained("latam/tiny-merged")
    local = ChatterboxLatamTTS.from_pretrained(merged)
    assert torch.equal(model.generate(TEXT, seed=2, max_new_tokens=30), local.generate(TEXT, seed=2, max_new_tokens=30))

    wrong = run_command("push", "--repo_id", "latam/x", "--what", "adapter", "--path", str(merged))
    assert wrong.returncode == 1 and "--what merged" in wrong.stderr


@pytest.mark.slow  # the per-accent adapters' training
def test_adapter_card_metadata_is_valid(accent_adapters, hub):
    card = render_model_card(accent_adapters, "latam/accents", base_model_id="ResembleAI/chatterbox")
    card.validate()  # the Hub's metadata check (local server)
    data = card.data.to_dict()
    assert data["base_model_relation"] == "adapter" and data["pipeline_tag"] == "text-to-speech"
    assert {"accent-mx", "accent-ar"} <= set(data["tags"]) and "model-index" not in data
    assert "Mexican (`mx`)" in card.text and 'accent="ar"' in card.text and "Perth watermark" in card.text
    assert "LoRA rank / alpha / dropout" in card.text  # the recipe summary from adapter.json


@pytest.mark.slow  # the per-accent adapters' training
def test_per_accent_adapters_push_as_one_repo_and_load_together(accent_adapters, hub):
    push_model(accent_adapters, "latam/accents-lora")
    files = set(hub.files("latam/accents-lora"))
    assert {"mx/t3/adapter_model.safetensors", "ar/t3/adapter_model.safetensors", "mx/adapter.json"} <= files
    assert not any("checkpoint-" in name for name in files)
    model = ChatterboxLatamTTS.from_pretrained("latam/accents-lora")
    assert model.accents == ["ar", "mx"]


def test_dataset_push_and_load_dataset_streaming(prepared, hub):
    import datasets

    folder = Path(prepared[0].dataset_dir).parent
    run = run_command("push", "--repo_id", "latam/tiny-data", "--what", "dataset", "--path", str(folder))
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = datasets.load_dataset("latam/tiny-data")
    assert loaded["train"].num_rows == prepared[1]["train"].num_rows
    row = next(iter(datasets.load_dataset("latam/tiny-data", split="train", streaming=True)))
    assert row["speech_tokens"] and row["text"]


def test_push_without_token_or_network_says_what_to_do_and_keeps_local_files(shared_adapter, monkeypatch, tmp_path):
    from huggingface_hub import constants

    before = sorted(p.relative_to(shared_adapter) for p in shared_adapter.rglob("*") if p.name != "README.md")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    with pytest.raises(HubError, match="hf auth login"):
        push_model(shared_adapter, "latam/no-token")
    monkeypatch.setenv("HF_TOKEN", "hf_local_test_token")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(HubError, match="cannot reach the Hub"):
        push_model(shared_adapter, "latam/no-network")
    after = sorted(p.relative_to(shared_adapter) for p in shared_adapter.rglob("*") if p.name != "README.md")
    assert before == after


def test_from_pretrained_of_a_missing_repo_says_what_to_do(hub):
    from chatterbox_latam.models.checkpoint import CheckpointNotFoundError

    with pytest.raises(CheckpointNotFoundError, match="hf download latam/does-not-exist"):
        ChatterboxLatamTTS.from_pretrained("latam/does-not-exist")
