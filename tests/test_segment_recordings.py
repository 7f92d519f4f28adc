"""Long recordings to clips: real Silero VAD on a joined espeak-ng take, a read script, a stand-in ASR, forced
alignment with a random-weight CTC model in the real format, speakers per file, bad inputs reported."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import soundfile as sf
from conftest import run_command

from chatterbox_latam.data.config import DataConfig, SegmentConfig
from chatterbox_latam.data.recordings import segment_recordings
from chatterbox_latam.data.sources import iter_rows
from chatterbox_latam.data.transcribe import CtcAligner
from chatterbox_latam.data.vad import VAD_SR, Word, plan_cuts, speech_regions
from chatterbox_latam.testing.espeak_corpus import SENTENCES, Speaker, long_recording

MIN, MAX = 3.0, 15.0


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    """The demo's long recording: every corpus sentence read in one take, pauses of 0.7 to 1.8 s between them."""
    folder = long_recording(tmp_path_factory.mktemp("take") / "recordings")
    return folder, json.loads((folder / "sentences.json").read_text())


def _wav16(path):
    from chatterbox_latam.data.audio import resample

    wav, rate = sf.read(str(path), dtype="float32")
    return resample(wav, rate, VAD_SR)


def _rows(folder):
    with open(folder / "metadata.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _rejected(folder):
    return [json.loads(line) for line in (folder / "rejected.jsonl").read_text().splitlines()]


def _in_a_pause(time, spans, slack=0.2):
    """Whether `time` lies in a pause between two sentences, or before the first / after the last (± slack)."""
    edges = [0.0] + [x for span in spans for x in span] + [float("inf")]
    pauses = list(zip(edges[::2], edges[1::2]))
    return any(start - slack <= time <= end + slack for start, end in pauses)


def _words(sentence, span):
    """A sentence's words spread evenly over its span, as an ASR with word timestamps gives them."""
    words = sentence.split()
    step = (span[1] - span[0]) / len(words)
    return [Word(span[0] + i * step, span[0] + (i + 0.8) * step, w) for i, w in enumerate(words)]


def test_vad_cuts_fall_in_the_pauses_within_the_bounds(take):
    folder, truth = take
    wav = _wav16(folder / "recording.wav")
    regions = speech_regions(wav)
    assert len(regions) >= len(truth["spans"])  # espeak pauses at commas and question marks too
    cuts = plan_cuts(regions, len(wav) / VAD_SR, MIN, MAX)
    assert cuts and not [c for c in cuts if c.reason]
    for cut in cuts:
        assert MIN <= cut.span.duration <= MAX
        assert _in_a_pause(cut.span.start, truth["spans"]) and _in_a_pause(cut.span.end, truth["spans"])
    covered = [s for s in truth["spans"] if any(c.span.start <= s[0] and s[1] <= c.span.end for c in cuts)]
    assert covered == truth["spans"]  # no sentence is split or lost
    # A cut never goes inside a word: with a word across the first join, that join is no cut.
    (_, end), (start, _) = truth["spans"][:2]
    alone = plan_cuts(regions, len(wav) / VAD_SR, 1.0, MAX)
    assert any(end <= c.span.end <= start for c in alone)
    bridged = plan_cuts(regions, len(wav) / VAD_SR, 1.0, MAX, words=[Word(end - 0.3, start + 0.3, "x")])
    assert not any(end <= c.span.end <= start for c in bridged)
    ragged = plan_cuts(regions, len(wav) / VAD_SR, 1.0, MAX, words=[Word(end - 0.3, start - 0.1, "x")])
    assert any(end <= c.span.end <= start for c in ragged)  # a word running into the pause: still a cut


def test_stretches_that_fit_no_bounds_come_back_with_their_reason():
    from chatterbox_latam.data.vad import Span

    regions = [Span(0.5, 20.0), Span(25.0, 26.0), Span(30.0, 34.0)]
    cuts = plan_cuts(regions, 35.0, MIN, MAX)
    assert [c.reason for c in cuts] == ["too_long", "too_short", None]


def test_a_read_script_gives_one_clip_per_line_offline_and_bad_files_are_reported(take, tmp_path):
    folder, truth = take
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(200)))
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(VAD_SR * 3, np.float32), VAD_SR)
    out = tmp_path / "out"
    config = SegmentConfig(input=[str(corrupt), str(folder / "recording.wav"), str(silent)], output_dir=str(out),
                           script=str(folder / "script.txt"), accent="mx", speaker_id="speaker_007",
                           asr_model=str(tmp_path / "no-asr-here"), min_dnsmos=None, device="cpu")
    summary = segment_recordings(config, progress=False)
    rows = _rows(out)
    assert [r["transcript"] for r in rows] == SENTENCES  # every line, in order, even those shorter than min_seconds
    assert {r["speaker_id"] for r in rows} == {"speaker_007"} and {r["accent"] for r in rows} == {"mx"}
    for row, span in zip(rows, truth["spans"], strict=True):
        info = sf.info(str(out / row["audio_path"]))  # its sentence whole, with a little of the pauses around it
        assert span[1] - span[0] <= info.duration <= span[1] - span[0] + 0.45
        assert float(row["duration"]) == pytest.approx(info.duration, abs=1e-3)
    reasons = {r["source"]: r["reason"] for r in _rejected(out)}
    assert reasons == {str(corrupt): "not_audio", str(silent): "silence"}
    assert summary["clips"] == len(SENTENCES) and summary["rejected_by_reason"] == {"not_audio": 1, "silence": 1}
    assert "| clips kept | 12 |" in (out / "summary.md").read_text()
    # A rerun reads what was done (content-keyed), and the output is read by preparation as a folder-layout input.
    before = (out / "metadata.csv").read_bytes()
    assert segment_recordings(config, progress=False) == summary and (out / "metadata.csv").read_bytes() == before
    rows_read = list(iter_rows(DataConfig(input_path=str(out), extra_inputs=[str(out)])))
    assert len(rows_read) == 2 * len(SENTENCES) and rows_read[-1].row_id.startswith("out/metadata.csv:")


class StandInAsr:
    """Hears the take's sentences from their known spans, except: nothing at all in sentence 2, a wrong word in
    sentence 3, and low confidence for sentence 6's clip."""

    def __init__(self, truth):
        self.truth, self.calls = truth, 0

    def words(self, wav):
        self.calls += 1
        words = []
        for index, (sentence, span) in enumerate(zip(self.truth["sentences"], self.truth["spans"], strict=True)):
            if index == 2:
                continue
            if index == 3:
                sentence = sentence.replace("cuesta", "cesta")
            words += _words(sentence, span)
        return words

    def confidence(self, wav, text):
        return -2.5 if text == self.truth["sentences"][6] else -0.2


def test_transcription_keeps_heard_words_and_rejects_empty_and_unsure_clips(take, tmp_path):
    folder, truth = take
    asr = StandInAsr(truth)
    out = tmp_path / "out"
    config = SegmentConfig(input=[str(folder / "recording.wav")], output_dir=str(out),
                           min_dnsmos=None, device="cpu")
    segment_recordings(config, transcriber=asr, progress=False)
    kept = {r["transcript"] for r in _rows(out)}
    rejected = {r["reason"]: r for r in _rejected(out)}
    sentences = truth["sentences"]
    assert rejected["no_words"]["text"] == ""
    assert rejected["low_confidence"]["text"] == sentences[6] and sentences[6] not in kept
    assert sentences[3].replace("cuesta", "cesta") in kept  # what the ASR heard is the text: no guess
    assert {sentences[i] for i in (0, 1, 4, 5, 7)} <= kept
    assert set(rejected) == {"no_words", "low_confidence"}
    calls = asr.calls
    segment_recordings(config, transcriber=asr, progress=False)
    assert asr.calls == calls  # done before: nothing recomputed


@pytest.fixture(scope="module")
def tiny_aligner(tmp_path_factory):
    """A random-weight Wav2Vec2 CTC model with a Spanish character vocabulary, saved as the real aligner is."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder = tmp_path_factory.mktemp("aligner")
    letters = list("abcdefghijklmnopqrstuvwxyzáéíóúñü'")
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{ch: 5 + i for i, ch in enumerate(letters)}}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=VAD_SR, return_attention_mask=True)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(32, 32, 32, 32, 32, 32, 32),
                            conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, pad_token_id=0)
    import torch

    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    return folder


def _pieces_in_order(out):
    """Every piece's text, kept or rejected, in the order of the recording (from the run's per-recording record)."""
    pieces = []
    for record in (out / ".work").glob("*.json"):
        record = json.loads(record.read_text())
        pieces += [(c["source"], c["start"], c["transcript"]) for c in record["clips"]]
        pieces += [(r["source"], r["start"], r["text"]) for r in record["rejected"]]
    return [text for *_, text in sorted(pieces)]


def test_known_text_is_aligned_and_every_word_lands_in_one_clip_in_order(take, tiny_aligner, tmp_path):
    """Random aligner weights place words anywhere: what holds whatever the weights is that each word of the text
    is in exactly one piece (kept or rejected with its text), in the text's order, as the book writes it."""
    folder, _ = take
    out = tmp_path / "out"
    config = SegmentConfig(input=[str(folder / "recording.wav")], output_dir=str(out),
                           transcripts=str(folder / "transcripts"), aligner_model=str(tiny_aligner),
                           min_align_score=0.0, min_dnsmos=None, device="cpu")
    segment_recordings(config, progress=False)
    text = (folder / "transcripts" / "recording.txt").read_text().split()
    pieces = _pieces_in_order(out)
    assert len(pieces) > 1 and " ".join(pieces).split() == text


def test_aligner_spells_words_and_refuses_text_longer_than_the_audio(tiny_aligner):
    aligner = CtcAligner(str(tiny_aligner))
    wav = np.random.default_rng(0).normal(0, 0.1, VAD_SR).astype(np.float32)
    words = aligner.align(wav, "El niño — 3 pingüinos.")
    assert [w.text for w in words] == ["El", "niño", "—", "3", "pingüinos."]
    assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:]))  # in order
    assert words[2].start == words[2].end == words[1].end  # nothing to spell: placed after the word before it
    with pytest.raises(ValueError, match="longer than the recording"):
        aligner.align(wav[:3200], " ".join(SENTENCES))


def test_speakers_per_file_from_two_voices(take, tiny_aligner, tmp_path):
    folder, truth = take
    other = long_recording(tmp_path / "other", Speaker("speaker_008", "es-419+f3", 65, 170, "ar"), SENTENCES[:4])
    texts = tmp_path / "texts"
    texts.mkdir()
    first, second = tmp_path / "ana.wav", tmp_path / "bruno.wav"
    first.write_bytes((folder / "recording.wav").read_bytes())
    second.write_bytes((other / "recording.wav").read_bytes())
    (texts / "ana.txt").write_text(" ".join(truth["sentences"]), encoding="utf-8")
    (texts / "bruno.txt").write_text(" ".join(SENTENCES[:4]), encoding="utf-8")
    out = tmp_path / "out"
    segment_recordings(SegmentConfig(input=[str(first), str(second)], output_dir=str(out), transcripts=str(texts),
                                     aligner_model=str(tiny_aligner), speakers="per-file", min_align_score=0.0,
                                     max_seconds=100.0, chars_per_second=[0.0, 1000.0], min_dnsmos=None,
                                     device="cpu"),
                       progress=False)
    rows = _rows(out)
    assert {r["speaker_id"] for r in rows} == {"ana", "bruno"}
    assert all(r["audio_path"].startswith(f"audio/{r['speaker_id']}/") for r in rows)
    assert " ".join(r["transcript"] for r in rows if r["speaker_id"] == "bruno").split() == \
        " ".join(SENTENCES[:4]).split()
    # The wrong text for a recording (far longer than it can say) is reported, the other recording still cut.
    (texts / "bruno.txt").write_text(" ".join(SENTENCES * 40), encoding="utf-8")
    out = tmp_path / "out-wrong-text"
    segment_recordings(SegmentConfig(input=[str(first), str(second)], output_dir=str(out), transcripts=str(texts),
                                     aligner_model=str(tiny_aligner), speakers="per-file", min_align_score=0.0,
                                     max_seconds=100.0, chars_per_second=[0.0, 1000.0], min_dnsmos=None,
                                     device="cpu"), progress=False)
    assert {r["speaker_id"] for r in _rows(out)} == {"ana"}
    assert [r["reason"] for r in _rejected(out) if r["source"] == str(second)] == ["unalignable"]


def test_script_runs_from_a_recipe_section_and_says_what_to_do_without_an_asr(take, tmp_path):
    folder, _ = take
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model:\n  base_model: x\nsegmentation:\n  input: [{folder / 'recording.wav'}]\n"
                      f"  output_dir: {tmp_path / 'out'}\n  min_dnsmos: 2.0\n", encoding="utf-8")
    done = run_command("segment", "--config", recipe, "--asr_model", tmp_path / "missing-asr")
    assert done.returncode != 0 and re.search(r"cannot be loaded .*--script", done.stderr), done.stderr
    done = run_command("segment", "--config", recipe, "--script", folder / "script.txt")
    assert done.returncode == 0, done.stderr
    assert "| clips kept |" in done.stdout and (tmp_path / "out" / "metadata.csv").exists()


@pytest.mark.slow
def test_noise_over_a_line_is_rejected_by_its_quality_score_or_left_unmatched(take, tmp_path):
    """Noise under a line lowers its DNSMOS below the threshold: rejected as low_quality. Louder noise hides the
    speech from the VAD: the line finds no speech and is reported, and the other lines still get their own."""
    folder, truth = take
    wav, rate = sf.read(str(folder / "recording.wav"), dtype="float32")
    start, end = (int(t * rate) for t in truth["spans"][5])
    others = truth["sentences"][:5] + truth["sentences"][6:]
    for level, reason in ((0.05, "low_quality"), (0.3, "unmatched_line")):
        noisy = wav.copy()
        noisy[start:end] += np.random.default_rng(0).normal(0, level, end - start).astype(np.float32)
        path = tmp_path / f"noisy-{level}.wav"
        sf.write(str(path), np.clip(noisy, -1, 1), rate)
        out = tmp_path / f"out-{level}"
        segment_recordings(SegmentConfig(input=[str(path)], output_dir=str(out), script=str(folder / "script.txt"),
                                         min_dnsmos=2.5, device="cpu"), progress=False)
        (rejected,) = _rejected(out)
        assert rejected["reason"] == reason and rejected["text"] == truth["sentences"][5]
        assert [r["transcript"] for r in _rows(out)] == others


def test_diarised_speakers_get_their_own_clips_and_overlapped_speech_is_left_out(take, tmp_path):
    """A stand-in diarisation (pyannote's turns as its pipeline gives them): sentences 0-5 by one speaker, 6-11 by
    another, and a second speaker's turn over sentence 3 (overlapped speech)."""
    folder, truth = take
    spans, sentences = truth["spans"], truth["sentences"]
    from chatterbox_latam.data.vad import Span

    def diarize(wav):
        middle = (spans[5][1] + spans[6][0]) / 2
        return [(Span(0.0, middle), "SPEAKER_00"), (Span(middle, len(wav) / VAD_SR), "SPEAKER_01"),
                (Span(spans[3][0] + 1.0, spans[3][0] + 2.5), "SPEAKER_01")]

    out = tmp_path / "out"
    asr = StandInAsr({**truth, "sentences": sentences})
    asr.words = lambda wav: [w for s, span in zip(sentences, spans, strict=True) for w in _words(s, span)]
    asr.confidence = lambda wav, text: -0.1
    segment_recordings(SegmentConfig(input=[str(folder / "recording.wav")], output_dir=str(out), speakers="diarize",
                                     min_dnsmos=None, device="cpu"), transcriber=asr, diarizer=diarize,
                       progress=False)
    rows = _rows(out)
    by_speaker = {s: " ".join(r["transcript"] for r in rows if r["speaker_id"] == s).split()
                  for s in ("recording_SPEAKER_00", "recording_SPEAKER_01")}
    assert by_speaker["recording_SPEAKER_01"] == " ".join(sentences[6:]).split()
    assert by_speaker["recording_SPEAKER_00"] == " ".join(sentences[:3] + sentences[4:6]).split()
    (overlap,) = _rejected(out)
    assert overlap["reason"] == "overlapping_speakers" and overlap["text"] == sentences[3]


def test_diarisation_that_cannot_load_says_what_to_do_before_any_work(take, tmp_path):
    from chatterbox_latam.data.transcribe import ModelUnavailable

    folder, _ = take
    with pytest.raises(ModelUnavailable, match="HF_TOKEN"):
        segment_recordings(SegmentConfig(input=[str(folder / "recording.wav")], output_dir=str(tmp_path / "out"),
                                         speakers="diarize", diarization_model=str(tmp_path / "no-pipeline"),
                                         device="cpu"), transcriber=StandInAsr({}), progress=False)
    assert not (tmp_path / "out" / ".work").exists()
