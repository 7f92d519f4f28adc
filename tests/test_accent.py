"""Accent identification: the class table, a random-weight classifier in CommonAccent's real layout run through
speechbrain offline, and the evaluation's accent table with per-accent adapters each speaking their own accent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, seed_folder

from chatterbox_latam.evaluation.config import EvalConfig
from chatterbox_latam.evaluation.accent import accents_of, load_accent_classifier, score_accent, shared_classes
from chatterbox_latam.evaluation.harness import evaluate_checkpoint
from chatterbox_latam.evaluation.metrics import MetricModelUnavailable
from chatterbox_latam.testing.accent_classifier import COMMONACCENT_ES_LABELS, write_accent_classifier


def _clip(corpus: Path, speaker: str, n: int):
    wav, sr = sf.read(corpus / "audio" / speaker / f"audio_{n:03d}.wav", dtype="float32")
    return wav, sr


def test_commonaccent_classes_map_onto_the_projects_accents():
    chileno, caribe, rioplatense, andino, mexico, espana = COMMONACCENT_ES_LABELS
    assert [accents_of(label) for label in COMMONACCENT_ES_LABELS] == [
        ("cl",), ("pr", "ve"), ("ar",), ("co", "pe"), ("mx",), ()]
    # the Caribbean label names Mexico and Colombia too: it is still the Caribbean class
    assert "MEXICO" in caribe and accents_of(caribe) == ("pr", "ve")
    assert accents_of("Andino-Pacífico: Colombia, Perú") == ("co", "pe") and accents_of("mexico") == ("mx",)
    assert accents_of("ar") == ("ar",) and accents_of("arabic") == ()
    assert shared_classes(COMMONACCENT_ES_LABELS) == {caribe: ["pr", "ve"], andino: ["co", "pe"]}
    heard = {"label": andino, "probabilities": {andino: 0.5, rioplatense: 0.3, mexico: 0.2}}
    assert score_accent(heard, "pe") == {"accent_label": andino, "accent_correct": 1.0, "accent_prob": 0.5}
    assert score_accent(heard, "ar") == {"accent_label": andino, "accent_correct": 0.0, "accent_prob": 0.3}


def test_random_weight_classifier_in_commonaccent_layout_runs_offline(corpus, tmp_path, hub):
    import evaluate

    folder = write_accent_classifier(tmp_path / "accent-id")
    classify = load_accent_classifier(str(folder), device="cpu")
    assert classify.labels == list(COMMONACCENT_ES_LABELS)
    clips = [_clip(corpus, "speaker_001", 1), _clip(corpus, "speaker_003", 1)]
    heard = classify([wav for wav, _ in clips], clips[0][1])
    for result in heard:
        assert result["label"] in COMMONACCENT_ES_LABELS
        assert set(result["probabilities"]) == set(COMMONACCENT_ES_LABELS)
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result["probabilities"][result["label"]] == max(result["probabilities"].values())
    # different audio, different probabilities: the network runs on the signal
    assert heard[0]["probabilities"] != heard[1]["probabilities"]

    module = evaluate.load(str(ROOT / "evaluate_metrics" / "accent_id"))
    scores = module.compute(predictions=[clips[0][0]], references=["mx"], sampling_rate=clips[0][1],
                            model=str(folder))
    assert scores["accent_prob"] == pytest.approx(score_accent(heard[0], "mx")["accent_prob"], abs=1e-5)

    with pytest.raises(MetricModelUnavailable, match=r"accent-id-commonaccent_xlsr-es-spanish.*--accent_model DIR"):
        load_accent_classifier(device="cpu")


class AlwaysMexico:
    """A stand-in classifier that hears Mexico in everything."""

    labels = ["mexico", "argentina", "colombia"]

    def __call__(self, wavs, sample_rate):
        return [{"label": "mexico", "probabilities": {"mexico": 1.0, "argentina": 0.0, "colombia": 0.0}}
                for _ in wavs]


@pytest.mark.slow
def test_accent_table_with_per_accent_adapters_each_on_its_own_accent(accent_adapters, corpus, tmp_path):
    """mx and ar adapters in one folder: each speaks its accent's sentences (the co sentences have no adapter and
    are left out); a classifier that always answers "mexico" gives accuracy 1 for mx and 0 for ar."""
    from chatterbox_latam.data.audio import CleaningConfig, clean_audio, decode_audio
    from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS

    data = seed_folder(corpus, tmp_path / "data", [("speaker_001", "mx"), ("speaker_003", "ar"), ("speaker_004", "co")])
    out = tmp_path / "eval"
    results = evaluate_checkpoint(EvalConfig(checkpoint=str(accent_adapters), test_data=str(data),
                                             output_dir=str(out), metrics=["accent"]), classifier=AlwaysMexico())
    assert sorted(results["sentences_without_adapter"]) == ["speaker_004_1", "speaker_004_2"]
    for system in ("finetuned", "ground_truth"):
        table = results["systems"][system]["accent"]
        assert set(table) == {"mx", "ar"}
        assert table["mx"]["accuracy"] == 1.0 and table["mx"]["target_prob"] == 1.0 and table["mx"]["n"] == 2
        assert table["ar"]["accuracy"] == 0.0 and table["ar"]["target_prob"] == 0.0
        assert table["ar"]["predicted"] == {"mexico": 2}
    assert results["systems"]["finetuned"]["aggregate"]["accent_accuracy"] == 0.5
    report = (out / "report.md").read_text()
    assert "## Accent identification" in report and "| finetuned | 0.00 | 0.00 | 1.00 | 1.00 |" in report  # ar, then mx
    assert "2 test sentences were left out: their accent has no adapter" in report
    assert (out / "plots" / "accent_confusion.png").read_bytes()[:4] == b"\x89PNG"

    # the ar sentence was spoken by the ar adapter: the same as that adapter alone, same voice and seed
    alone = ChatterboxLatamTTS.from_pretrained(accent_adapters / "ar" / "final")
    cleaning = CleaningConfig()  # the evaluation's references are cleaned as training's
    reference = clean_audio(*decode_audio(str(data / "audio" / "speaker_003_2.wav")), cleaning)
    expected = alone.synthesize("Hola número 1.", reference, cleaning.sampling_rate, seed=0, accent="ar")
    written, _ = sf.read(out / "audio" / "finetuned" / "speaker_003_1.wav", dtype="float32")
    assert len(written) == len(expected) and np.abs(written - expected).max() < 1e-3


def test_training_listening_scores_add_the_accent_probability(corpus, tmp_path):
    """What `logging.eval_accent_model` adds to each evaluation: the mean probability of each sample's own accent
    (`eval_accent_prob`, a `metric_for_best_model`); a sample too short to score counts 0."""
    from chatterbox_latam.training.callbacks import ListeningScores

    folder = write_accent_classifier(tmp_path / "accent-id")
    (wav, sr), (reference, _) = _clip(corpus, "speaker_003", 1), _clip(corpus, "speaker_003", 2)
    samples = [{"text": "hola", "accent": "ar", "reference": reference, "reference_sr": sr}] * 2
    scores = ListeningScores(accent_model=str(folder))([wav, wav[: sr // 10]], samples, sr)
    heard = load_accent_classifier(str(folder), device="cpu")([wav], sr)[0]
    assert scores["eval_accent_prob"] == pytest.approx(score_accent(heard, "ar")["accent_prob"] / 2, abs=1e-5)
    assert "eval_accent_prob" not in ListeningScores()([wav], samples[:1], sr)
