"""The seed-tts-eval protocol: the shipped Spanish list, its normalisation and per-sentence WER, its WavLM-Large +
ECAPA-TDNN speaker verification (a random-weight checkpoint in UniSpeech's format), and the harness run with it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import seed_folder

from chatterbox_latam.evaluation.config import EvalConfig
from chatterbox_latam.constants import PROMPT_SECONDS
from chatterbox_latam.data.references import joined_seconds
from chatterbox_latam.evaluation.harness import evaluate_checkpoint
from chatterbox_latam.evaluation.metrics import MetricModelUnavailable, error_rates, normalize_seed_tts_eval
from chatterbox_latam.evaluation.testset import load_test_items, protocol_items, read_protocol_list
from chatterbox_latam.evaluation.wavlm_ecapa import build_wavlm_ecapa, load_wavlm_ecapa
from chatterbox_latam.testing.sv_checkpoint import write_sv_checkpoint


def test_the_shipped_list_covers_each_accent_with_every_kind_of_sentence():
    rows = read_protocol_list("seed-tts-eval")
    assert len({row["id"] for row in rows}) == len(rows) == 40
    assert Counter(row["accent"] for row in rows) == {"mx": 8, "ar": 8, "co": 8, "cl": 8, "pe": 8}
    for accent in ("mx", "ar", "co", "cl", "pe"):
        kinds = Counter(row["kind"] for row in rows if row["accent"] == accent)
        assert kinds == {"numbers": 2, "abbreviations": 2, "question": 2, "long": 2}
    for row in rows:
        if row["kind"] == "numbers":
            assert any(ch.isdigit() for ch in row["text"])
        if row["kind"] == "question":
            assert row["text"].startswith("¿") and "?" in row["text"]
        if row["kind"] == "long":
            assert len(row["text"].split()) >= 25


def test_seed_tts_eval_normalisation():
    assert normalize_seed_tts_eval("¿Vos sabés dónde queda?  El Sr. Gómez, ¡a las 7:45!") == \
        "vos sabés dónde queda el sr gómez a las 745"
    assert normalize_seed_tts_eval("l'amour") == "l'amour"  # the apostrophe stays, as in the protocol
    # accents count: "esta" is not "está" for this protocol
    assert error_rates(["¿Dónde está?"], ["donde esta"], ("seed_tts_eval",))["wer_seed_tts_eval"] == 1.0


def test_speaker_verification_checkpoint_in_unispeech_format(corpus, tmp_path):
    checkpoint = write_sv_checkpoint(tmp_path / "wavlm_large_finetune.pth")
    similarity = load_wavlm_ecapa(str(checkpoint))
    a, sr = sf.read(corpus / "audio" / "speaker_001" / "audio_001.wav", dtype="float32")
    b, _ = sf.read(corpus / "audio" / "speaker_003" / "audio_001.wav", dtype="float32")
    c, _ = sf.read(corpus / "audio" / "speaker_001" / "audio_002.wav", dtype="float32")
    scores = similarity([(a, b), (b, a), (a, c)], sr)
    assert scores[0] == pytest.approx(scores[1], abs=1e-6) and abs(scores[0] - scores[2]) > 1e-4
    # every weight comes from the file: loaded again, the same scores (weights left at a random init would differ
    # between loads); the checkpoint of another seed, other scores
    torch.manual_seed(123)
    assert load_wavlm_ecapa(str(checkpoint))([(a, b), (a, c)], sr) == pytest.approx([scores[0], scores[2]], abs=1e-6)
    other = write_sv_checkpoint(tmp_path / "other.pth", seed=1)
    assert abs(load_wavlm_ecapa(str(other))([(a, b)], sr)[0] - scores[0]) > 1e-4

    saved = torch.load(checkpoint, weights_only=True)["model"]
    del saved["layer2.SE_Connect.linear2.weight"]
    with pytest.raises(ValueError, match=r"does not match WavLM \+ ECAPA-TDNN: missing \['layer2.SE_Connect"):
        build_wavlm_ecapa(saved)
    with pytest.raises(MetricModelUnavailable, match=r"wavlm_large_finetune.pth.*--sv_checkpoint PATH"):
        load_wavlm_ecapa(str(tmp_path / "absent.pth"))


def test_sentences_take_held_out_speakers_of_their_accent_in_turn(corpus, tmp_path):
    data = seed_folder(corpus, tmp_path / "data", [("speaker_001", "mx"), ("speaker_002", "mx"), ("speaker_003", "ar")])
    left_out: list[str] = []
    items = protocol_items("seed-tts-eval", str(data), skipped=left_out)
    assert [it.id for it in items] == [f"{a}-0{i}" for a in ("mx", "ar") for i in range(1, 9)]
    assert [it.speaker_id for it in items[:4]] == ["speaker_001", "speaker_002"] * 2
    assert {it.speaker_id for it in items[8:]} == {"speaker_003"} and all(it.truth is None for it in items)
    assert len(left_out) == 24 and {i[:2] for i in left_out} == {"co", "cl", "pe"}
    # the reference starts with the speaker's longest clip; under T3's 6 s, the next longest is joined after a gap
    durations = sorted((len(c.truth) / c.sample_rate for c in load_test_items(str(data)) if c.speaker_id == "speaker_001"),
                       reverse=True)
    assert durations[0] < PROMPT_SECONDS
    assert len(items[0].reference) / items[0].sample_rate == pytest.approx(joined_seconds(durations), abs=0.01)


def test_evaluation_under_the_protocol(trained_adapter, corpus, tmp_path):
    rows = read_protocol_list("seed-tts-eval")[:2]

    def transcriber(wavs, sample_rate):  # the first sentence heard exactly, the second not at all
        return [rows[0]["text"], ""]

    checkpoint = write_sv_checkpoint(tmp_path / "sv.pth")
    results = evaluate_checkpoint(EvalConfig(checkpoint=str(trained_adapter), test_data=str(corpus),
                                             output_dir=str(tmp_path / "eval"), metrics=["wer", "speaker_sim"],
                                             protocol="seed-tts-eval", sv_checkpoint=str(checkpoint),
                                             max_samples=2, wavlm_model="", max_new_tokens=100),
                                  transcriber=transcriber)
    assert set(results["systems"]) == {"finetuned"}  # the list's sentences have no recording
    aggregate = results["systems"]["finetuned"]["aggregate"]
    assert aggregate["wer_seed_tts_eval"] == 0.5  # per sentence: (0 + 1) / 2, not the corpus rate
    corpus_rate = error_rates([r["text"] for r in rows], [rows[0]["text"], ""])["wer_spanish"]
    assert aggregate["wer_spanish"] == pytest.approx(corpus_rate) and corpus_rate != 0.5  # the corpus rate beside
    assert all(np.isfinite(s["speaker_sim_seed_tts_eval"]) for s in results["systems"]["finetuned"]["samples"])
    protocol = results["protocol"]
    assert protocol["list"] == "chatterbox_latam/evaluation/lists/seed_tts_eval_es.tsv"
    report = (tmp_path / "eval" / "report.md").read_text()
    assert f"Protocol: **seed-tts-eval** on the list `{protocol['list']}` (sha256 {protocol['list_sha256']}" in report
    assert "| wer_seed_tts_eval |" in report and "| speaker_sim_seed_tts_eval |" in report
    assert Path(tmp_path / "eval" / "audio" / "finetuned" / "mx-01.wav").exists()
    # the model card's table names the protocol and its list, and the model-index carries its two figures
    from chatterbox_latam.hub.cards import eval_results, evaluation_table

    table = evaluation_table(results)
    assert "| WER (seed-tts-eval protocol, Whisper-large-v3) | 0.500 |" in table
    assert f"Protocol seed-tts-eval: the 2 sentences of `{protocol['list']}`" in table
    assert {r.metric_name for r in eval_results(results, None)} >= {
        "WER (seed-tts-eval protocol, Whisper-large-v3)", "SIM (seed-tts-eval protocol, WavLM-Large + ECAPA-TDNN)"}


def test_whisper_asr_runs_a_local_checkpoint_with_spanish_forced(corpus, tmp_path, monkeypatch):
    """The protocol's ASR path on a random-weight Whisper in the real format: every decoding starts with the
    Spanish transcription prompt (<|startoftranscript|> <|es|> <|transcribe|> <|notimestamps|>)."""
    from transformers import AutoTokenizer
    from transformers.models.whisper import modeling_whisper

    from chatterbox_latam.evaluation.metrics import load_asr
    from chatterbox_latam.testing.tiny_whisper import write_tiny_whisper

    folder = write_tiny_whisper(tmp_path / "whisper")
    prompts, detections = [], []
    forward = modeling_whisper.WhisperDecoder.forward

    def recording(self, input_ids=None, *args, **kwargs):
        if input_ids is not None and input_ids.shape[1] > 1:  # steps that feed the prompt (each clip, at least once)
            prompts.extend(row[:4] for row in input_ids.tolist())
        elif input_ids is not None:  # one token: language detection feeds <|startoftranscript|> alone
            detections.extend(input_ids.tolist())
        return forward(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(modeling_whisper.WhisperDecoder, "forward", recording)
    a, sr = sf.read(corpus / "audio" / "speaker_001" / "audio_001.wav", dtype="float32")
    texts = load_asr(str(folder), device="cpu")([a, a[: sr // 2]], sr)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    spanish = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|es|>", "<|transcribe|>",
                                               "<|notimestamps|>"])
    assert len(prompts) >= 2 and all(prompt == spanish for prompt in prompts)
    assert [spanish[0]] not in detections  # the language was given, not detected


def test_the_protocol_leaves_the_goals_out():
    """The targets score cloning against each sentence's recording; the list's sentences have none."""
    config = EvalConfig(checkpoint="adapter", test_data="data", output_dir="out", protocol="seed-tts-eval")
    assert config.targets is False and "accent" in config.metrics
    with pytest.raises(ValueError, match="a protocol's list has none"):
        EvalConfig(checkpoint="adapter", test_data="data", output_dir="out", protocol="seed-tts-eval", targets=True)
