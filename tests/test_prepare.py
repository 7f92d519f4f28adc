"""Preparation: bad rows rejected with their reason while good rows survive, features that make sense,
batched extraction equal to clip-by-clip, idempotent reruns, and resuming a run that was killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, make_configs, run_command

from chatterbox_latam.data.dataset import load_prepared
from chatterbox_latam.data.prepare import prepare_dataset


def _wav(corpus: Path, speaker: str, n: int) -> Path:
    return corpus / "audio" / speaker / f"audio_{n:03d}.wav"


def _transcript(corpus: Path, relative: str) -> str:
    for line in (corpus / "metadata.csv").read_text(encoding="utf-8").splitlines():
        if line.startswith(relative + ","):
            return line.split(",", 1)[1].rsplit(",", 3)[0].strip('"')
    raise KeyError(relative)


@pytest.fixture(scope="module")
def messy_dataset(corpus, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder-layout dataset with good rows, rows that need care (stereo, odd rates, mp3) and every kind of bad row.

    Returns the folder and {audio_path: expected outcome ("kept" or a rejection reason)}.
    """
    root = tmp_path_factory.mktemp("messy")
    audio = root / "audio"
    rows: list[tuple[bytes, str]] = []  # (encoded CSV line, expected)
    expected: dict[str, str] = {}

    def add(relative: str, transcript: str, speaker: str, outcome: str, encoding: str = "utf-8"):
        line = f'{relative},"{transcript}",{speaker},0,mx\n'
        rows.append((line.encode(encoding), outcome))
        expected.setdefault(relative, outcome)

    def place(relative: str, data: bytes | None = None, source: Path | None = None) -> str:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if data is not None else source.read_bytes())
        return relative

    # good rows: two speakers, three utterances each, copied from the corpus
    for speaker in ("speaker_001", "speaker_003"):
        for n in (1, 2, 3):
            source = _wav(corpus, speaker, n)
            relative = place(f"audio/{speaker}/ok_{n}.wav", source=source)
            add(relative, _transcript(corpus, f"audio/{speaker}/audio_{n:03d}.wav"), speaker, "kept")
    speech, rate = sf.read(_wav(corpus, "speaker_001", 4), dtype="float32")
    text4 = _transcript(corpus, "audio/speaker_001/audio_004.wav")

    # rows that need care but must survive
    (audio / "care").mkdir(parents=True)
    sf.write(audio / "care" / "stereo.wav", np.stack([speech, 0.5 * speech], axis=1), rate)
    add("audio/care/stereo.wav", text4, "speaker_001", "kept")
    import librosa

    sf.write(audio / "care" / "rate44k.wav", librosa.resample(speech, orig_sr=rate, target_sr=44_100) * 0.9, 44_100)
    add("audio/care/rate44k.wav", text4, "speaker_001", "kept")
    sf.write(audio / "care" / "rate8k.flac", librosa.resample(speech, orig_sr=rate, target_sr=8_000) * 0.8, 8_000)
    add("audio/care/rate8k.flac", text4, "speaker_001", "kept")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(_wav(corpus, "speaker_003", 4)),
                    str(audio / "care" / "clip.mp3")], check=True)
    add("audio/care/clip.mp3", _transcript(corpus, "audio/speaker_003/audio_004.wav"), "speaker_003", "kept")

    # bad rows
    good = _wav(corpus, "speaker_003", 5).read_bytes()
    add(place("audio/bad/truncated.wav", good[: len(good) // 2]), "Hola.", "speaker_003", "truncated")
    add(place("audio/bad/header_only.wav", good[:30]), "Hola.", "speaker_003", "truncated")
    add(place("audio/bad/empty.wav", b""), "Hola.", "speaker_003", "empty_file")
    sf.write(audio / "bad" / "zero.wav", np.zeros(0, dtype="float32"), 16_000)
    add("audio/bad/zero.wav", "Hola.", "speaker_003", "zero_length")
    add(place("audio/bad/not_audio.wav", b"this is a text file, not audio\n" * 20), "Hola.", "speaker_003", "not_audio")
    sf.write(audio / "bad" / "silence.wav", np.zeros(2 * 16_000, dtype="float32"), 16_000)
    add("audio/bad/silence.wav", "Hola.", "speaker_003", "silence")
    sf.write(audio / "bad" / "short.wav", speech[: int(0.3 * rate)], rate)
    add("audio/bad/short.wav", "Ho.", "speaker_001", "too_short")
    sf.write(audio / "bad" / "long.wav", np.concatenate([speech] * 4), rate)
    add("audio/bad/long.wav", "Largo.", "speaker_001", "too_long")
    add(place("audio/bad/no_text.wav", source=_wav(corpus, "speaker_001", 5)), "", "speaker_001", "empty_transcript")
    add(place("audio/bad/blank_text.wav", source=_wav(corpus, "speaker_001", 6)), "   ", "speaker_001",
        "empty_transcript")
    add("audio/bad/missing.wav", "No existe.", "speaker_001", "missing_file")
    add(place("audio/bad/latin1.wav", source=_wav(corpus, "speaker_001", 7)), "Canción de años", "speaker_001",
        "transcript_encoding", encoding="latin-1")
    add(place("audio/bad/chinese.wav", source=_wav(corpus, "speaker_003", 6)), "你好世界", "speaker_003",
        "unsupported_text")
    add(place("audio/bad/copy.wav", source=_wav(corpus, "speaker_001", 1)), "Copia.", "speaker_001", "duplicate")
    rows.append((b"audio/speaker_001/ok_2.wav,\"Otra vez.\",speaker_001,0,mx\n", "duplicate"))  # listed twice
    rows.append((b"audio/bad/extra_field.wav,Hola,speaker_001,0,mx,sobra\n", "bad_row"))
    expected["audio/bad/extra_field.wav"] = "bad_row"

    header = b"audio_path,transcript,speaker_id,duration,accent\n"
    (root / "metadata.csv").write_bytes(header + b"".join(line for line, _ in rows))
    return root, expected


def test_bad_rows_are_rejected_with_their_reason_and_good_rows_survive(messy_dataset, tiny_checkpoint, tmp_path):
    root, expected = messy_dataset
    model, data = make_configs(tiny_checkpoint, root, tmp_path / "out", max_audio_length=8.0, validation_size=0.0,
                               test_size=0.0)
    result = prepare_dataset(model, data, progress=False)

    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    reasons = {Path(r["source"]).relative_to(root).as_posix() if r["source"] else r["row"]: r["reason"]
               for r in rejected}
    want_rejected = {path: reason for path, reason in expected.items() if reason != "kept"}
    assert {p: reasons.get(p) for p in want_rejected} == want_rejected
    assert len(set(want_rejected.values())) >= 12  # distinct kinds of bad row
    # the second listing of ok_2.wav is the duplicate; the first survives
    assert sum(1 for r in rejected if r["reason"] == "duplicate") == 2

    kept = load_prepared(tmp_path / "out")["train"]
    kept_sources = {Path(s).relative_to(root).as_posix() for s in kept["source"]}
    assert kept_sources == {path for path, outcome in expected.items() if outcome == "kept"}
    summary = result.summary
    assert summary["kept"] == len(kept_sources) and summary["rejected"] == len(rejected)
    assert summary["clips_in"] == summary["kept"] + summary["rejected"]
    assert summary["rejected_by_reason"]["truncated"] == 2
    assert "| rejected: silence | 1 |" in (tmp_path / "out" / "summary.md").read_text()

    # stereo and odd-rate rows were converted, not dropped
    for row in kept:
        if "care" in row["source"]:
            decoded = row["audio"].get_all_samples()
            assert decoded.sample_rate == 24_000 and decoded.data.shape[0] == 1


def test_feature_columns_have_sane_shapes(prepared):
    result, dataset = prepared
    assert set(dataset) == {"train", "validation", "test"}
    assert sum(len(split) for split in dataset.values()) == result.summary["kept"] == 48
    by_id = {row["id"]: row for split in dataset.values() for row in split}
    for row in by_id.values():
        tokens_per_second = len(row["speech_tokens"]) / row["duration"]
        assert abs(len(row["speech_tokens"]) - 25 * row["duration"]) <= 2, tokens_per_second
        assert np.linalg.norm(row["speaker_emb"]) == pytest.approx(1.0, abs=1e-4)
        assert np.linalg.norm(row["prompt_speaker_emb"]) == pytest.approx(1.0, abs=1e-4)
        # every prompt is a whole 6 s reference (the corpus's 2-4 s clips joined): T3's 150 prompt tokens
        assert len(row["prompt_speech_tokens"]) == 150
        assert max(row["speech_tokens"]) < 6561 and max(row["prompt_speech_tokens"]) < 6561
        # the prompt comes from other utterances of the same speaker, never the row's own
        assert row["id"] not in row["prompt_ids"] and row["prompt_source"] == "other"
        assert {by_id[clip]["speaker_id"] for clip in row["prompt_ids"]} == {row["speaker_id"]}
        assert row["supervised_speech_tokens"] == len(row["speech_tokens"])
        if row["reference_ids"]:  # a reference this clip heads: it starts with the clip
            assert row["reference_ids"][0] == row["id"] and 0 < len(row["reference_speech_tokens"]) <= 150
    heads = {tuple(r["reference_ids"]): r for r in by_id.values() if r["reference_ids"]}
    for row in by_id.values():  # a planned reference's features are the head row's reference columns
        if tuple(row["prompt_ids"]) in heads:
            head = heads[tuple(row["prompt_ids"])]
            assert row["prompt_speech_tokens"] == head["reference_speech_tokens"]
            assert row["prompt_speaker_emb"] == head["reference_speaker_emb"]
    # no validation or test audio conditions a training row, and every training row has a reference to draw that
    # does not hold its own clip
    train_ids = set(dataset["train"]["id"])
    for row in dataset["train"]:
        assert set(row["prompt_ids"]) <= train_ids
        assert not row["reference_ids"] or len(row["reference_speech_tokens"]) == 150  # enough audio in training
        assert any(row["id"] not in ids and by_id[ids[0]]["speaker_id"] == row["speaker_id"] for ids in heads
                   if ids[0] in train_ids)
        assert np.asarray(row["speech_feat"]).shape == (2 * len(row["speech_tokens"]), 80)
        assert len(row["xvector"]) == 192
        # the text is what the tokenizer reads: no digits or symbols left
        assert not any(ch.isdigit() for ch in row["text"]) and "%" not in row["text"] and "$" not in row["text"]
        decoded = row["audio"].get_all_samples()
        assert decoded.sample_rate == 24_000
        assert decoded.data.shape[-1] / 24_000 == pytest.approx(row["duration"], abs=0.01)


def test_no_clip_is_its_own_prompt(corpus, tiny_checkpoint, tmp_path):
    """A speaker's only clip is left out of training and counted (its stop token would never be supervised with its
    own last part as prompt); `self_prompt` keeps today's opt-in: a long enough lone clip lends its last part and
    the loss stops before it. A speaker with less audio than a whole reference gets a shorter prompt, reported."""
    from chatterbox_latam.data.collator import usable_rows

    root = tmp_path / "single"
    (root / "audio").mkdir(parents=True)
    parts = [sf.read(_wav(corpus, "speaker_002", n), dtype="float32") for n in (1, 2, 3, 4)]
    rate = parts[0][1]
    gap = np.zeros(rate // 4, dtype=np.float32)
    sf.write(root / "audio" / "long.wav", np.concatenate([x for wav, _ in parts for x in (wav, gap)]), rate)
    shutil.copy(_wav(corpus, "speaker_003", 1), root / "audio" / "short.wav")
    shutil.copy(_wav(corpus, "speaker_004", 1), root / "audio" / "b.wav")
    shutil.copy(_wav(corpus, "speaker_004", 2), root / "audio" / "c.wav")
    (root / "metadata.csv").write_text(
        "audio_path,transcript,speaker_id\naudio/long.wav,Hola. Hola. Hola. Hola.,solo_long\n"
        "audio/short.wav,Hola.,solo_short\naudio/b.wav,Hola.,pair\naudio/c.wav,Adiós.,pair\n",
        encoding="utf-8",
    )
    cache = str(tmp_path / "cache")
    model, data = make_configs(tiny_checkpoint, root, tmp_path / "out", validation_size=0.0, test_size=0.0,
                               cache_dir=cache)
    result = prepare_dataset(model, data, progress=False)
    train = load_prepared(tmp_path / "out")["train"]
    rows = {r["speaker_id"]: r for r in train if r["speaker_id"] != "pair"}
    pair = [r for r in train if r["speaker_id"] == "pair"]
    assert rows["solo_long"]["prompt_source"] == rows["solo_short"]["prompt_source"] == "none"
    assert result.summary["left_out_of_training"] == 2 and result.summary["trained_on_own_tail"] == 0
    assert "`self_prompt: true`" in (tmp_path / "out" / "summary.md").read_text()
    assert sorted(usable_rows(train)["speaker_id"]) == ["pair", "pair"]
    # the pair prompt each other: the other clip alone, less than a whole reference, and said so
    assert [r["prompt_ids"] for r in pair] == [[pair[1]["id"]], [pair[0]["id"]]]
    assert all(len(r["prompt_speech_tokens"]) < 150 for r in pair)
    assert set(result.summary["speakers_short_of_prompt_audio"]["train"]) == {"pair"}
    assert "Shorter prompts in train" in (tmp_path / "out" / "summary.md").read_text()

    model, data = make_configs(tiny_checkpoint, root, tmp_path / "opt-in", validation_size=0.0, test_size=0.0,
                               cache_dir=cache, self_prompt=True)
    result = prepare_dataset(model, data, progress=False)
    train = load_prepared(tmp_path / "opt-in")["train"]
    rows = {r["speaker_id"]: r for r in train if r["speaker_id"] != "pair"}
    long, short = rows["solo_long"], rows["solo_short"]
    assert long["duration"] > 6.0 and long["prompt_source"] == "tail" and long["prompt_ids"] == [long["id"]]
    tail_seconds = min(6.0, long["duration"] / 2)
    # the loss covers only the speech before the prompt's part of the clip
    assert long["supervised_speech_tokens"] == int((long["duration"] - tail_seconds) * 25)
    assert long["supervised_speech_tokens"] < len(long["speech_tokens"])
    # the prompt is the tail, tokenised on its own: not the clip's first 6 s, and no longer than the tail
    assert long["prompt_speech_tokens"] != long["reference_speech_tokens"]
    assert abs(len(long["prompt_speech_tokens"]) - 25 * tail_seconds) <= 2
    assert long["prompt_speaker_emb"] != long["speaker_emb"]
    assert short["prompt_source"] == "none" and short["supervised_speech_tokens"] == 0
    assert result.summary["left_out_of_training"] == 1 and result.summary["trained_on_own_tail"] == 1
    assert result.summary["prompts"]["tail"]["train"] == 1 and result.summary["prompts"]["none"]["train"] == 1
    assert "trained with their own last part as prompt" in (tmp_path / "opt-in" / "summary.md").read_text()
    assert sorted(usable_rows(train)["speaker_id"]) == ["pair", "pair", "solo_long"]


def test_each_sentence_stays_in_one_split(prepared):
    """The corpus's speakers read the same sentences: every reading of a sentence (normalised, or as written: "$1.250"
    is pesos for one accent and soles for another) is in one split, and the summary reports the groups."""
    from chatterbox_latam.data.text import sentence_key

    result, dataset = prepared
    seen: dict[str, str] = {}
    for name, split in dataset.items():
        for row in split:
            for key in (f"text:{sentence_key(row['text'])}", f"raw:{sentence_key(row['raw_text'])}"):
                assert seen.setdefault(key, name) == name, key
    sentences = result.summary["sentences"]
    assert sentences["in_two_splits"] == 0 and sentences["rule"] == "by sentence"
    assert sentences["groups"] == 12 and sentences["read_more_than_once"] == 12
    assert all(len(split) for split in dataset.values())  # each split still holds sentences


def test_heldout_and_validation_speakers_form_their_splits(prepared, tiny_checkpoint, corpus, tmp_path):
    """Whole speakers: the test split for evaluation alone, the validation split for checkpoint selection; the other
    speakers' readings of their sentences are left out and counted, so still no sentence is in two splits. The
    corpus's clips with a transcript of their own each (the split never reads the audio), but one sentence every
    speaker reads."""
    root = tmp_path / "own-sentences"
    (root / "audio").mkdir(parents=True)
    lines = ["audio_path,transcript,speaker_id,accent"]
    for speaker in sorted(p.name for p in (corpus / "audio").iterdir()):
        for n in range(1, 9):
            os.link(_wav(corpus, speaker, n), root / "audio" / f"{speaker}_{n}.wav")
            text = "Hola, ¿cómo estás?" if n == 1 else f"Frase {n} de {speaker.replace('_', ' ')}."
            lines.append(f'audio/{speaker}_{n}.wav,"{text}",{speaker},mx')
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    model, data = make_configs(tiny_checkpoint, root, tmp_path / "out", heldout_speakers=["speaker_006"],
                               validation_speakers=["speaker_005"], train_s3gen=True,
                               cache_dir=str(Path(prepared[0].dataset_dir).parent / "cache"))
    result = prepare_dataset(model, data, progress=False)
    dataset = load_prepared(tmp_path / "out")
    assert set(dataset["test"]["speaker_id"]) == {"speaker_006"}
    assert set(dataset["validation"]["speaker_id"]) == {"speaker_005"}
    assert not {"speaker_005", "speaker_006"} & set(dataset["train"]["speaker_id"])
    for name in ("validation", "test"):  # their prompts come from their own speaker's clips of the split
        ids = set(dataset[name]["id"])
        assert all(set(row["prompt_ids"]) <= ids and len(row["prompt_speech_tokens"]) == 150 for row in dataset[name])
    # checkpoint selection's samples are the validation speaker's, never the test split's, also where the validation
    # split holds only trained speakers and the test split unseen ones
    from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe
    from chatterbox_latam.parser import parse_recipe
    from chatterbox_latam.data.dataset import tokenize_dataset
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import load_text_tokenizer
    from chatterbox_latam.training.run import _audio_samples

    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, ["--config", str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"),
                                                    "--eval_audio_samples", "3"]))
    dataset = tokenize_dataset(dataset, load_text_tokenizer(resolve_checkpoint(tiny_checkpoint)), "es")
    assert {s["speaker_id"] for s in _audio_samples(dataset, recipe)} == {"speaker_005"}
    trained_only = type(dataset)(train=dataset["train"], validation=dataset["train"].select(range(4)),
                                 test=dataset["test"])
    assert "speaker_006" not in {s["speaker_id"] for s in _audio_samples(trained_only, recipe)}
    from chatterbox_latam.data.text import sentence_key

    sentences = result.summary["sentences"]
    assert sentences["rule"] == "by sentence, heldout_speakers and validation_speakers by speaker"
    assert sentences["in_two_splits"] == 0 and sentences["left_out_readings"] == 5  # "Hola" by all but speaker_006
    assert result.summary["kept"] == 43 and "hola cómo estás" not in {
        sentence_key(t) for name in ("train", "validation") for t in dataset[name]["text"]}
    held = {sentence_key(t) for name in ("validation", "test") for t in dataset[name]["raw_text"]}
    assert not held & {sentence_key(t) for t in dataset["train"]["raw_text"]}
    assert "by other speakers of sentences a held-out speaker reads are left out" in (
        tmp_path / "out" / "summary.md").read_text()


def test_batched_extraction_equals_clip_by_clip(tiny_checkpoint, corpus):
    from chatterbox_latam.data.audio import CleaningConfig, clean_audio, decode_audio
    from chatterbox_latam.data.features import FeatureExtractor
    from chatterbox_latam.models.checkpoint import resolve_checkpoint

    extractor = FeatureExtractor(resolve_checkpoint(tiny_checkpoint), device="cpu")
    wavs = [clean_audio(*decode_audio(_wav(corpus, "speaker_005", n)), CleaningConfig()) for n in (1, 2, 3, 4)]
    batched = extractor.extract(wavs)
    for wav, together in zip(wavs, batched, strict=True):
        alone = extractor.extract([wav])[0]
        np.testing.assert_array_equal(together.speech_tokens, alone.speech_tokens)
        np.testing.assert_array_equal(together.prompt_tokens, alone.prompt_tokens)
        np.testing.assert_allclose(together.speaker_emb, alone.speaker_emb, atol=1e-5)


def _cache_files(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


def test_rerun_recomputes_nothing(prepared, tiny_checkpoint, corpus):
    result, dataset = prepared
    prepared_dir = Path(result.dataset_dir).parent
    before = _cache_files(prepared_dir / "cache")
    model, data = make_configs(tiny_checkpoint, corpus, prepared_dir, train_s3gen=True, feature_batch_seconds=40)
    again = prepare_dataset(model, data, progress=False)
    assert _cache_files(prepared_dir / "cache") == before  # nothing written again
    assert again.summary == result.summary
    reloaded = load_prepared(prepared_dir)
    for split in dataset:
        assert reloaded[split]["id"] == dataset[split]["id"]
        assert reloaded[split]["speech_tokens"] == dataset[split]["speech_tokens"]


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(prepared, tiny_checkpoint, corpus, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable, str(ROOT / "training" / "prepare_data.py"), "--config",
        str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"), "--base_model", str(tiny_checkpoint),
        "--input", str(corpus), "--output_dir", str(out), "--feature_batch_seconds", "8",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    features = out / "cache" / "features"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(features.rglob("*.safetensors"))) < 6:
        assert process.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = _cache_files(features)
    clip_features = [p for p in done_before if p.endswith(".safetensors") and "/references/" not in p]
    assert 6 <= len(clip_features) < 48
    assert not (out / "dataset").exists()  # nothing that looks complete

    finished = run_command("prepare", *command[2:])  # in this process: only the kill needed one
    assert finished.returncode == 0, finished.stderr[-2000:]
    after = _cache_files(features)
    assert {k: after[k] for k in done_before if k.endswith(".safetensors")} == {
        k: v for k, v in done_before.items() if k.endswith(".safetensors")
    }  # what was done before the kill was not redone
    assert len([p for p in after if p.endswith(".safetensors") and "/references/" not in p]) == 48
    resumed = load_prepared(out)
    reference = {r["id"]: r["speech_tokens"] for s in prepared[1].values() for r in s}
    assert {r["id"]: r["speech_tokens"] for s in resumed.values() for r in s} == reference
