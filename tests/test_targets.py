"""The project's targets measured: prosody spreads on signals whose spreads are known, and the whole measurement on the
tiny model (fine-tune and base, exaggerations, references cut to 3, 6 and 10 s of corpus speech)."""

from __future__ import annotations

import numpy as np
import pytest

from chatterbox_latam.evaluation.config import EvalConfig
from chatterbox_latam.evaluation.targets import REFERENCE_SECONDS, prosody, reference_of
from chatterbox_latam.evaluation.harness import load_test_items

SR = 24_000


def _tone(freq, amplitude, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_prosody_returns_the_known_pitch_and_energy_spreads():
    # 150 Hz then 300 Hz: 12 semitones apart, half the voiced frames each -> a standard deviation of 6 semitones;
    # amplitude 0.5 then 0.05: 20 dB apart -> 10 dB.
    spread = prosody(np.concatenate([_tone(150, 0.5), _tone(300, 0.05)]), SR, "hola mundo")
    assert spread["f0_spread"] == pytest.approx(6.0, abs=0.4)
    assert spread["energy_spread"] == pytest.approx(10.0, abs=1.0)
    assert spread["speaking_rate"] == pytest.approx(9 / 2.0, rel=0.1)  # 9 letters over 2 s of sound
    flat = prosody(np.concatenate([_tone(200, 0.3), _tone(200, 0.3)]), SR)
    assert flat["f0_spread"] < 0.3 and flat["energy_spread"] < 1.0 and "speaking_rate" not in flat


def test_references_come_from_the_speakers_other_audio_never_the_sentence_itself(corpus):
    items = load_test_items(str(corpus))
    item = items[0]
    speaker = [it for it in items if it.speaker_id == item.speaker_id]
    for seconds in REFERENCE_SECONDS:
        reference, actual = reference_of(items, item, seconds)
        assert 0 < actual <= seconds
        assert len(reference) == round(actual * item.sample_rate)
    available = sum(len(it.truth) for it in speaker[1:]) / item.sample_rate
    assert reference_of(items, item, 3.0)[1] == pytest.approx(3.0)  # real clips are joined up to the length
    assert reference_of(items, item, 1000.0)[1] >= available  # all of it, the sentence's own audio left out
    for each in items:  # every sentence: the other items' references are joined from clips that include it
        assert not holds(reference_of(items, each, 1000.0)[0], each.truth), each.id


def holds(audio: np.ndarray, clip: np.ndarray) -> bool:
    """Whether `clip` appears, sample for sample, anywhere inside `audio`."""
    starts = np.flatnonzero(audio[: len(audio) - len(clip) + 1] == clip[0])
    return any(np.array_equal(audio[i: i + len(clip)], clip) for i in starts)


def test_a_folders_references_are_the_same_wherever_it_lies(corpus, tmp_path):
    """The seeded order of a speaker's clips follows the speaker and file names, not the folder's path: a report
    made from a copy elsewhere voices each sentence the same way."""
    import shutil

    copy = shutil.copytree(corpus, tmp_path / "elsewhere" / "corpus")
    here, there = load_test_items(str(corpus)), load_test_items(str(copy))
    assert [it.id for it in here] == [it.id for it in there]
    assert all(np.array_equal(a.reference, b.reference) for a, b in zip(here, there))


def test_the_full_evaluation_measures_the_goals_unless_told_otherwise():
    assert EvalConfig(checkpoint="x", test_data="y", output_dir="z").targets
    assert not EvalConfig(checkpoint="x", test_data="y", output_dir="z", metrics=["rtf"]).targets
    assert not EvalConfig(checkpoint="x", test_data="y", output_dir="z", targets=False).targets
