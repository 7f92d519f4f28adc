"""Each metric on inputs whose answer is known: fixed strings, the same voice against another, clean against noisy."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from chatterbox_latam.evaluation.metrics import (
    MetricModelUnavailable,
    dnsmos,
    error_rates,
    normalize_spanish_for_wer,
    real_time_factor,
    speaker_similarity,
    transcribe,
)


def _clip(corpus, speaker: str, n: int):
    return sf.read(corpus / "audio" / speaker / f"audio_{n:03d}.wav", dtype="float32")


def test_wer_and_cer_of_fixed_strings_with_and_without_accents():
    scores = error_rates(["El niño está aquí."], ["el nino esta aqui"])
    assert scores["wer_spanish"] == pytest.approx(3 / 4)  # niño, está, aquí differ when accents count
    assert scores["cer_spanish"] == pytest.approx(3 / len("el niño está aquí"))
    assert scores["wer_whisper"] == 0.0 and scores["cer_whisper"] == 0.0  # Whisper's normaliser merges them
    assert error_rates(["Tengo 21 años"], ["tengo veintiún años"])["wer_spanish"] == 0.0  # numbers spelled out
    assert error_rates(["uno dos tres cuatro"], ["uno tres cuatro cinco"])["wer_spanish"] == pytest.approx(2 / 4)
    assert normalize_spanish_for_wer("¡Hola, Señor Muñoz!") == "hola señor muñoz"


def test_same_voice_scores_higher_similarity_than_another_voice(corpus):
    a, sr = _clip(corpus, "speaker_001", 1)
    b, _ = _clip(corpus, "speaker_001", 2)
    other, _ = _clip(corpus, "speaker_003", 2)
    same, different = speaker_similarity([(a, b), (a, other)], sr)
    assert same > different + 0.02, (same, different)


def test_clean_audio_scores_higher_dnsmos_than_noisy(corpus):
    clean, sr = _clip(corpus, "speaker_002", 3)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(len(clean)).astype(np.float32)
    noisy = clean + noise * np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-5 / 20)  # 5 dB SNR
    clean_score, noisy_score = dnsmos([clean, np.clip(noisy, -1, 1)], sr)
    assert clean_score["ovrl"] > noisy_score["ovrl"] and clean_score["bak"] > noisy_score["bak"]
    assert 1.0 <= noisy_score["ovrl"] <= 5.0


def test_rtf():
    assert real_time_factor(2.0, 4.0) == 0.5


def test_asr_model_from_the_hub_fails_clearly_offline(corpus, hub):
    wav, sr = _clip(corpus, "speaker_001", 1)
    with pytest.raises(MetricModelUnavailable, match=r"openai/whisper-large-v3.*--asr_model DIR"):
        transcribe([wav], sr)


def test_metrics_load_as_evaluate_modules_offline(corpus):
    import evaluate
    from conftest import ROOT

    wer = evaluate.load(str(ROOT / "evaluate_metrics" / "wer_es"))
    assert wer.compute(predictions=["el nino esta aqui"], references=["El niño está aquí."])["wer_spanish"] == 0.75
    assert evaluate.load(str(ROOT / "evaluate_metrics" / "rtf")).compute(
        predictions=[1.0, 1.0], references=[4.0, 4.0])["rtf"] == 0.25
    a, sr = _clip(corpus, "speaker_001", 1)
    b, _ = _clip(corpus, "speaker_001", 2)
    similarity = evaluate.load(str(ROOT / "evaluate_metrics" / "speaker_similarity"))
    assert similarity.compute(predictions=[a], references=[b], sampling_rate=sr)["speaker_similarity"] == \
        pytest.approx(speaker_similarity([(a, b)], sr)[0], abs=1e-5)
    mos = evaluate.load(str(ROOT / "evaluate_metrics" / "dnsmos")).compute(predictions=[a], sampling_rate=sr)
    assert mos["ovrl"] == pytest.approx(dnsmos([a], sr)[0]["ovrl"], abs=1e-4)


def test_wavlm_similarity_runs_a_local_checkpoint_and_fails_clearly_without_one(corpus, tmp_path, hub):
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    from chatterbox_latam.evaluation.metrics import speaker_similarity_wavlm

    config = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16), tdnn_kernel=(3, 1),
                         tdnn_dilation=(1, 1), xvector_output_dim=8, num_buckets=32)
    WavLMForXVector(config).save_pretrained(tmp_path / "wavlm")
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=True).save_pretrained(tmp_path / "wavlm")
    a, sr = _clip(corpus, "speaker_001", 1)
    b, _ = _clip(corpus, "speaker_001", 2)
    other, _ = _clip(corpus, "speaker_003", 2)
    scores = speaker_similarity_wavlm([(a, b), (a, other), (other, b)], sr, model=str(tmp_path / "wavlm"))

    # each score is the cosine of the two clips' x-vectors, each clip embedded alone at 16 kHz (padded beside a
    # longer clip, a clip's features change: the convolutional front end's group norm spans the padding)
    import torch
    from transformers import AutoFeatureExtractor

    from chatterbox_latam.data.audio import resample

    extractor, network = AutoFeatureExtractor.from_pretrained(tmp_path / "wavlm"), WavLMForXVector.from_pretrained(
        tmp_path / "wavlm").eval()
    with torch.no_grad():
        x = {name: torch.nn.functional.normalize(network(**extractor(
            [resample(wav, sr, 16_000)], sampling_rate=16_000, return_tensors="pt")).embeddings[0], dim=0)
             for name, wav in (("a", a), ("b", b), ("other", other))}
    expected = [float(x["a"] @ x["b"]), float(x["a"] @ x["other"]), float(x["other"] @ x["b"])]
    assert sr != 16_000 and len({round(e, 4) for e in expected}) == 3  # three different answers to get right
    assert scores == pytest.approx(expected, abs=1e-5)
    with pytest.raises(MetricModelUnavailable, match=r"microsoft/wavlm-base-plus-sv.*--wavlm_model DIR"):
        speaker_similarity_wavlm([(a, b)], sr)


def test_utmos_runs_a_local_state_dict_and_fails_clearly_without_one(corpus, tmp_path, hub):
    import torch
    from utmos_pytorch.utmos_torch import UTMOSModel

    from chatterbox_latam.evaluation.metrics import utmos

    torch.manual_seed(0)
    torch.save(UTMOSModel().state_dict(), tmp_path / "utmos_state_dict.pt")  # random weights, the real format
    wav, sr = _clip(corpus, "speaker_001", 1)
    [score] = utmos([wav], sr, checkpoint=str(tmp_path / "utmos_state_dict.pt"))
    assert np.isfinite(score)
    with pytest.raises(MetricModelUnavailable, match=r"Blinorot/UTMOS-PyTorch.*--utmos_checkpoint"):
        utmos([wav], sr)
