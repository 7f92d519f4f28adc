"""Long recordings (podcasts, audiobooks, interviews, a read script) -> clips in the folder layout.

    recordings --(Silero VAD)--> stretches of speech --(plan_cuts: in pauses, within bounds)--> clips
               --(text: ASR words | aligned known text | the script's lines)--> checks --> audio/<speaker>/*.wav

Where a clip's text comes from:
- no text given: an ASR (`transcribe.WhisperTranscriber`) hears the whole recording with word timings; cuts go
  only in pauses no word spans, and a clip's text is the words inside it;
- `transcripts` (one `<stem>.txt` per recording): the text is force-aligned to the audio (`transcribe.CtcAligner`)
  and a clip's text is the book's own words;
- `script` (one line per utterance, read in order in one take): `read_script.match_script` pairs stretches of
  speech with lines by length; a line whose length is doubtful is checked by the ASR when one can be loaded, and
  rejected with its reason when none can (so this path runs offline with the VAD alone).

Checks: no words, the ASR's confidence (average log-probability), the aligner's score, an implausible speaking
rate, DNSMOS (noise and music), overlapping speakers (diarisation). Every rejected stretch is written to
`rejected.jsonl` with its reason, start and end, none dropped silently. Work is content-keyed per recording
(its bytes, its text and the settings): a rerun recomputes nothing, a killed run continues where it stopped, and
`metadata.csv` is rewritten whole only at the end. The output folder is what `prepare_data.py --format seed`
reads (or `data.extra_inputs`, beside another corpus).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import SegmentConfig
from ..utils import content_digest, write_atomic, write_wav
from .audio import Rejected, decode_audio, resample, to_mono
from .read_script import match_script, spoken_length
from .transcribe import CtcAligner, ModelUnavailable, Transcriber, WhisperTranscriber, character_error_rate
from .vad import VAD_SR, Span, Word, padded_span, plan_cuts, speech_regions, words_in

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".webm", ".aac", ".wma", ".mp4"}
WORK_DIR = ".work"
"""Per-recording results, one JSON each, named by the recording's content key."""
REJECTED_NAME = "rejected.jsonl"

SEGMENT_REASONS = {
    "no_speech": "the VAD found no speech in the recording",
    "too_long": "speech longer than max_seconds with no pause to cut at",
    "too_short": "speech shorter than min_seconds between pauses longer than max_pause",
    "no_words": "the ASR heard no words in the clip",
    "low_confidence": "the ASR's average log-probability of the clip's text is below min_logprob",
    "poor_alignment": "the known text's words align to the clip with a score below min_align_score",
    "implausible_rate": "letters per second outside chars_per_second: the text does not fit the audio",
    "low_quality": "DNSMOS overall below min_dnsmos (noise, music, distortion)",
    "overlapping_speakers": "two speakers talk at once",
    "unalignable": "the known text cannot be aligned to the recording (longer than the audio, or too long at once)",
    "length_mismatch": "a script line's speech is much longer or shorter than the line, and no ASR could check it",
    "script_mismatch": "the ASR hears something else than the script line",
    "unmatched_line": "a script line with no speech that fits it (skipped when reading?)",
    "unmatched_speech": "speech that fits no script line (a retake, a cough?)",
}

Diarizer = Callable[[np.ndarray], list[tuple[Span, str]]]
"""`(wav at VAD_SR) -> [(turn, speaker label)]`."""


class RecordingRejected(Exception):
    """A whole recording rejected for a segmentation reason (`SEGMENT_REASONS`), as `audio.Rejected` is for
    decoding."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in SEGMENT_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Piece:
    """A stretch of a recording on its way to a clip: its span, speaker, text, and its rejection if any."""

    span: Span
    speaker_id: str
    text: str = ""
    reason: str | None = None
    detail: str = ""
    words: list[Word] = field(default_factory=list)


def _safe(name: str) -> str:
    """A name fit for a folder or file name (speaker ids, clip names)."""
    return re.sub(r"[^\w.-]+", "_", name)


def find_recordings(inputs: Sequence[str]) -> list[Path]:
    """The audio files named or held (recursively) by `inputs`, in a stable order."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"input {item} does not exist: give audio files or folders of them.")
    if not found:
        raise FileNotFoundError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {list(inputs)}.")
    return list(dict.fromkeys(found))


def load_diarizer(model: str, device: str) -> Diarizer:
    """pyannote's speaker diarisation pipeline (a gated Hub repo: accept its conditions and set HF_TOKEN)."""
    import os

    import torch

    try:
        from pyannote.audio import Pipeline
    except ImportError:
        raise ModelUnavailable("--speakers diarize needs pyannote.audio: `pip install pyannote.audio`.") from None
    try:
        pipeline = Pipeline.from_pretrained(model, token=os.environ.get("HF_TOKEN"))
    except Exception as error:  # pyannote raises several kinds for a gated, missing or offline repo
        raise ModelUnavailable(f"the diarisation pipeline {model!r} cannot be loaded ({error}). Accept its "
                               "conditions on the Hub and set HF_TOKEN, or give a local folder.") from None
    if pipeline is None:
        raise ModelUnavailable(f"the diarisation pipeline {model!r} is gated: accept its conditions on the Hub "
                               "and set HF_TOKEN.")
    pipeline.to(torch.device(device))

    def diarize(wav: np.ndarray) -> list[tuple[Span, str]]:
        output = pipeline({"waveform": torch.from_numpy(np.asarray(wav, np.float32))[None], "sample_rate": VAD_SR})
        annotation = getattr(output, "speaker_diarization", output)  # pyannote 4's DiarizeOutput, or 3's Annotation
        return [(Span(turn.start, turn.end), str(label))
                for turn, _, label in annotation.itertracks(yield_label=True)]

    return diarize


def speakers_of(regions: Sequence[Span], turns: Sequence[tuple[Span, str]]) -> list[str | None]:
    """Each region's speaker: the diarisation turn that covers most of it; None where two speakers' turns overlap
    inside it (overlapped speech)."""
    labels: list[str | None] = []
    for region in regions:
        overlaps: Counter = Counter()
        spans = []
        for turn, label in turns:
            shared = min(region.end, turn.end) - max(region.start, turn.start)
            if shared > 0:
                overlaps[label] += shared
                spans.append((max(region.start, turn.start), min(region.end, turn.end), label))
        both = any(a[2] != b[2] and min(a[1], b[1]) - max(a[0], b[0]) > 0.1 for a in spans for b in spans)
        labels.append(None if both or not overlaps else overlaps.most_common(1)[0][0])
    return labels


class Segmenter:
    """One segmentation run: the models (loaded when first needed), the counters, the writing."""

    def __init__(self, config: SegmentConfig, transcriber: Transcriber | None = None,
                 aligner: CtcAligner | None = None, diarizer: Diarizer | None = None, progress: bool = True):
        self.config = config
        self.output_dir = Path(config.output_dir)
        self._transcriber, self._aligner, self._diarizer = transcriber, aligner, diarizer
        self.progress = progress
        self.asr_problem: str | None = None

    # -- models ---------------------------------------------------------------------------------------------------
    def transcriber(self, required: bool = True) -> Transcriber | None:
        if self._transcriber is None and self.asr_problem is None:
            try:
                self._transcriber = WhisperTranscriber(self.config.asr_model, self.config.language,
                                                       self.config.device)
            except ModelUnavailable as error:
                self.asr_problem = str(error)
        if self._transcriber is None and required:
            raise ModelUnavailable(self.asr_problem or "no ASR")
        return self._transcriber

    def aligner(self) -> CtcAligner:
        if self._aligner is None:
            self._aligner = CtcAligner(self.config.aligner_model, self.config.device)
        return self._aligner

    def diarizer(self) -> Diarizer:
        if self._diarizer is None:
            self._diarizer = load_diarizer(self.config.diarization_model, self.config.device)
        return self._diarizer

    # -- one recording ----------------------------------------------------------------------------------------------
    def settings_key(self) -> str:
        wanted = {k: v for k, v in asdict(self.config).items() if k not in ("input", "output_dir", "device")}
        return json.dumps(wanted, sort_keys=True)

    def speaker_for(self, path: Path) -> str:
        if self.config.speakers == "per-file":
            return _safe(path.stem)
        return self.config.speaker_id

    def known_text(self, path: Path) -> str | None:
        if not self.config.transcripts:
            return None
        text_path = Path(self.config.transcripts) / f"{path.stem}.txt"
        if not text_path.exists():
            raise Rejected("missing_file", f"no known text {text_path} for this recording")
        return text_path.read_text(encoding="utf-8")

    def load(self, source: Path | bytes) -> tuple[np.ndarray, int, np.ndarray]:
        """The recording (a path, or its bytes already read) mono at its own rate, its rate, and at the VAD's rate;
        silence is a rejection."""
        samples, rate = decode_audio(source)
        mono = to_mono(samples)
        peak = float(np.abs(mono).max())
        if peak == 0.0 or 20 * np.log10(peak) < -50.0:
            raise Rejected("silence", f"peak {20 * np.log10(peak) if peak else float('-inf'):.1f} dBFS")
        return mono, rate, resample(mono, rate, VAD_SR)

    def regions(self, wav16: np.ndarray) -> list[Span]:
        return speech_regions(wav16, self.config.vad_threshold, self.config.min_silence)

    def cut(self, regions: list[Span], duration: float, speaker: str, words: list[Word] | None) -> list[Piece]:
        c = self.config
        cuts = plan_cuts(regions, duration, c.min_seconds, c.max_seconds, c.max_pause, c.padding, words)
        held = words_in(words or [], cuts)
        return [Piece(cut.span, speaker, " ".join(w.text for w in these), cut.reason, cut.detail, these)
                for cut, these in zip(cuts, held)]

    def pieces(self, path: Path, wav16: np.ndarray) -> list[Piece]:
        """A recording's pieces (not the script's: see `script_pieces`), each with its text or its rejection."""
        duration = len(wav16) / VAD_SR
        regions = self.regions(wav16)
        if not regions:
            raise RecordingRejected("no_speech", f"{duration:.1f} s without speech")
        text = self.known_text(path)
        if text is None:
            words = self.transcriber().words(wav16)
        else:
            try:
                words = self.aligner().align(wav16, text)
            except ValueError as error:
                raise RecordingRejected("unalignable", str(error)) from None
        if self.config.speakers != "diarize":
            return self.cut(regions, duration, self.speaker_for(path), words)
        labels = speakers_of(regions, self.diarizer()(wav16))
        pieces: list[Piece] = []
        run: list[Span] = []
        for index, (region, label) in enumerate(zip(regions, labels)):
            run.append(region)
            if index + 1 == len(regions) or labels[index + 1] != label:
                name = f"{_safe(path.stem)}_{label}"
                inside = [w for w in words if run[0].start - 0.5 <= (w.start + w.end) / 2 <= run[-1].end + 0.5]
                if label is None:
                    pieces.append(Piece(Span(run[0].start, run[-1].end), "", " ".join(w.text for w in inside),
                                        "overlapping_speakers", f"{len(run)} stretch(es) of overlapped speech"))
                else:
                    pieces += self.cut(run, duration, name, inside)
                run = []
        return pieces

    def check(self, piece: Piece, clip16: np.ndarray, aligned: bool) -> None:
        """Rejects a piece whose text is missing, unsure, misaligned or implausibly fast or slow."""
        c = self.config
        if piece.reason:
            return
        if not piece.text.strip():
            piece.reason, piece.detail = "no_words", "nothing was heard in this stretch"
            return
        if aligned:
            scores = [w.score for w in piece.words if w.score is not None]
            score = float(np.mean(scores)) if scores else 0.0
            if score < c.min_align_score:
                piece.reason, piece.detail = "poor_alignment", f"score {score:.3f} < {c.min_align_score}"
                return
        else:
            logprob = self.transcriber().confidence(clip16, piece.text)
            if logprob is not None and logprob < c.min_logprob:
                piece.reason, piece.detail = "low_confidence", f"average log-probability {logprob:.2f}"
                return
        rate = spoken_length(piece.text) / max(piece.span.duration, 1e-3)  # numbers spelled out
        if not c.chars_per_second[0] <= rate <= c.chars_per_second[1]:
            piece.reason, piece.detail = "implausible_rate", f"{rate:.1f} letters per second"

    def finish(self, source: str, pieces: list[Piece], mono: np.ndarray, rate: int, wav16: np.ndarray,
               key: str) -> dict[str, Any]:
        """Scores the quality of the pieces that passed, writes their clips, and returns the recording's record."""
        from .quality import dnsmos

        usable = [p for p in pieces if not p.reason]
        if self.config.min_dnsmos is not None and usable:
            clips = [wav16[int(p.span.start * VAD_SR):int(p.span.end * VAD_SR)] for p in usable]
            for piece, score in zip(usable, dnsmos(clips, VAD_SR)):
                if score["ovrl"] < self.config.min_dnsmos:
                    piece.reason, piece.detail = "low_quality", f"DNSMOS {score['ovrl']:.2f}"
        stem = _safe(Path(source).stem)
        clips_out, rejected = [], []
        for index, piece in enumerate(pieces):
            where = {"source": source, "start": round(piece.span.start, 3), "end": round(piece.span.end, 3)}
            if piece.reason:
                rejected.append({**where, "speaker_id": piece.speaker_id, "reason": piece.reason,
                                 "detail": piece.detail, "text": piece.text})
                continue
            relative = f"audio/{piece.speaker_id}/{stem}-{key[:8]}_{index:04d}.wav"
            clip = mono[int(piece.span.start * rate):int(piece.span.end * rate)]
            write_wav(self.output_dir / relative, clip, rate)
            clips_out.append({**where, "audio_path": relative, "transcript": piece.text.strip(),
                              "speaker_id": piece.speaker_id, "duration": round(len(clip) / rate, 3),
                              "accent": self.config.accent or ""})
        return {"source": source, "seconds": round(len(mono) / rate, 3), "clips": clips_out, "rejected": rejected}

    def recording(self, path: Path) -> dict[str, Any]:
        """One recording, from its cached record when it was done before with the same content and settings."""
        try:
            text = self.known_text(path)
            data = path.read_bytes()  # read once: the key, then the decoding
            key = content_digest(data, text or "", self.settings_key())
        except (Rejected, OSError) as error:
            reason = error.reason if isinstance(error, Rejected) else "missing_file"
            return {"source": str(path), "seconds": 0.0, "clips": [],
                    "rejected": [{"source": str(path), "reason": reason, "detail": str(error)}]}
        done = self.output_dir / WORK_DIR / f"{key}.json"
        if done.exists():
            return json.loads(done.read_text(encoding="utf-8"))
        try:
            mono, rate, wav16 = self.load(data)
            pieces = self.pieces(path, wav16)
        except (Rejected, RecordingRejected) as error:
            record = {"source": str(path), "seconds": 0.0, "clips": [],
                      "rejected": [{"source": str(path), "reason": error.reason, "detail": error.detail}]}
        else:
            for piece in pieces:
                clip16 = wav16[int(piece.span.start * VAD_SR):int(piece.span.end * VAD_SR)]
                self.check(piece, clip16, aligned=self.config.transcripts is not None)
            record = self.finish(str(path), pieces, mono, rate, wav16, key)
        write_atomic(done, json.dumps(record, ensure_ascii=False, indent=1).encode())
        return record

    # -- a read script ---------------------------------------------------------------------------------------------
    def script_records(self, paths: list[Path]) -> list[dict[str, Any]]:
        """The recordings as one take of the script (in the order given), matched line by line."""
        script = Path(self.config.script)
        lines = [line.strip() for line in script.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"the script {script} has no lines.")
        contents = {path: path.read_bytes() for path in paths}  # read once: the key, then the decoding
        key = content_digest(script.read_bytes(), *contents.values(), self.settings_key())
        done = self.output_dir / WORK_DIR / f"{key}.json"
        if done.exists():
            return json.loads(done.read_text(encoding="utf-8"))
        records, loaded, all_regions, owners, offset = [], [], [], [], 0.0
        for path in paths:
            try:
                mono, rate, wav16 = self.load(contents[path])
            except Rejected as error:
                records.append({"source": str(path), "seconds": 0.0, "clips": [],
                                "rejected": [{"source": str(path), "reason": error.reason, "detail": error.detail}]})
                continue
            regions = self.regions(wav16)
            if not regions:
                records.append({"source": str(path), "seconds": round(len(mono) / rate, 3), "clips": [],
                                "rejected": [{"source": str(path), "reason": "no_speech",
                                              "detail": f"{len(wav16) / VAD_SR:.1f} s without speech"}]})
                continue
            loaded.append((path, mono, rate, wav16, []))
            for region in regions:  # one time line; a gap of an hour between files: a line never spans two
                all_regions.append(Span(region.start + offset, region.end + offset))
                owners.append(len(loaded) - 1)
            offset += len(wav16) / VAD_SR + 3600.0
        starts = [sum(len(item[3]) / VAD_SR + 3600.0 for item in loaded[:k]) for k in range(len(loaded))]
        unmatched_lines = []
        matches = match_script(all_regions, lines, max_pause_inside=self.config.max_pause)
        for match in matches:
            if match.first is None:
                unmatched_lines += [{"source": str(script), "reason": "unmatched_line",
                                     "detail": f"line {k + 1}", "text": lines[k]} for k in match.lines]
                continue
            owner = owners[match.first]
            path, mono, rate, wav16, pieces = loaded[owner]
            first_of_file = owners.index(owner)
            regions = [Span(r.start - starts[owner], r.end - starts[owner])
                       for r, o in zip(all_regions, owners) if o == owner]
            span = padded_span(regions, match.first - first_of_file, match.last - first_of_file,
                               len(wav16) / VAD_SR, self.config.padding)
            piece = Piece(span, self.speaker_for(path), " ".join(lines[k] for k in match.lines))
            if not match.lines:
                piece.reason, piece.detail = "unmatched_speech", f"{span.duration:.1f} s"
            else:
                self.check_line(piece, wav16, match.ratio)
            pieces.append(piece)
        for path, mono, rate, wav16, pieces in loaded:
            pieces.sort(key=lambda p: p.span.start)
            records.append(self.finish(str(path), pieces, mono, rate, wav16, key))
        if unmatched_lines:
            records.append({"source": str(script), "seconds": 0.0, "clips": [], "rejected": unmatched_lines})
        write_atomic(done, json.dumps(records, ensure_ascii=False, indent=1).encode())
        return records

    def check_line(self, piece: Piece, wav16: np.ndarray, ratio: float) -> None:
        """A line whose speech is much longer or shorter than expected: the ASR decides, or it is rejected."""
        c = self.config
        if piece.span.duration > c.max_seconds:
            piece.reason, piece.detail = "too_long", f"{piece.span.duration:.1f} s > max_seconds {c.max_seconds}"
            return
        if 1 / c.script_tolerance <= ratio <= c.script_tolerance:
            return
        transcriber = self.transcriber(required=False)
        if transcriber is None:
            piece.reason = "length_mismatch"
            piece.detail = (f"speech {ratio:.2f}x the line's expected length; no ASR to check it "
                            f"({(self.asr_problem or '').split('(')[0].strip()})")
            return
        clip16 = wav16[int(piece.span.start * VAD_SR):int(piece.span.end * VAD_SR)]
        heard = " ".join(w.text for w in transcriber.words(clip16))
        error = character_error_rate(heard, piece.text)
        if error > c.max_cer:
            piece.reason, piece.detail = "script_mismatch", f"CER {error:.2f} (heard: {heard[:120]!r})"

    # -- the run ---------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        paths = find_recordings(self.config.input)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.config.speakers == "diarize" and not self.config.script:
            self.diarizer()  # a gated or unreachable pipeline fails now, with what to do
        if self.config.script:
            records = self.script_records(paths)
        else:
            if self.config.transcripts is None:
                self.transcriber()  # fails now, with what to do, rather than after the VAD of every file
            records = [self.recording(path) for path in tqdm(paths, desc="segment", unit="recording",
                                                               disable=not self.progress)]
        return self.write(records)

    def write(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        clips = [clip for record in records for clip in record["clips"]]
        rejected = [item for record in records for item in record["rejected"]]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["audio_path", "transcript", "speaker_id", "duration", "accent"])
        writer.writerows([c["audio_path"], c["transcript"], c["speaker_id"], c["duration"], c["accent"]]
                         for c in clips)
        write_atomic(self.output_dir / "metadata.csv", buffer.getvalue().encode())
        write_atomic(self.output_dir / REJECTED_NAME,
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected).encode())
        speakers: dict[str, dict[str, float]] = {}
        for clip in clips:
            entry = speakers.setdefault(clip["speaker_id"], {"clips": 0, "hours": 0.0})
            entry["clips"] += 1
            entry["hours"] += clip["duration"] / 3600
        summary = {
            "recordings": len({r["source"] for r in records if r["seconds"]}),
            "hours_in": round(sum(r["seconds"] for r in records) / 3600, 4),
            "hours_kept": round(sum(c["duration"] for c in clips) / 3600, 4),
            "clips": len(clips),
            "rejected": len(rejected),
            "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejected).items())),
            "speakers": {s: {"clips": v["clips"], "hours": round(v["hours"], 4)} for s, v in sorted(speakers.items())},
        }
        write_atomic(self.output_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False).encode())
        write_atomic(self.output_dir / "summary.md", summary_table(summary).encode())
        return summary


def summary_table(summary: dict[str, Any]) -> str:
    """The end-of-run table: hours in and kept, clips, rejections by reason, per speaker."""
    out = ["| | |", "|---|---:|", f"| recordings | {summary['recordings']} |",
           f"| hours in | {summary['hours_in']:.4f} |", f"| hours kept | {summary['hours_kept']:.4f} |",
           f"| clips kept | {summary['clips']} |", f"| rejected | {summary['rejected']} |"]
    out += [f"| rejected: {reason} | {n} |" for reason, n in summary["rejected_by_reason"].items()]
    out += ["", "| speaker | clips | hours |", "|---|---:|---:|"]
    out += [f"| {s} | {v['clips']} | {v['hours']:.4f} |" for s, v in summary["speakers"].items()]
    return "\n".join(out) + "\n"


def segment_recordings(config: SegmentConfig, transcriber: Transcriber | None = None,
                       aligner: CtcAligner | None = None, diarizer: Diarizer | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Cuts long recordings into clips with their text, in the folder layout `prepare_data.py` reads.

    Runs the whole segmentation (see the module docstring): speech found by the VAD, cuts in pauses, each clip's
    text from the ASR, the aligned transcript or the read script, every rejected stretch written to
    `rejected.jsonl` with its reason. A rerun recomputes nothing already done.

    Args:
        config: The recordings, where their text comes from, the output folder and every threshold (a recipe's
            `segmentation:` section, or `segment_recordings.py`'s flags).
        transcriber: The ASR to use instead of loading `config.asr_model` (anything with `words(wav)` and
            `confidence(wav, text)`, as `transcribe.WhisperTranscriber`).
        aligner: The forced aligner to use instead of loading `config.aligner_model` (`transcribe.CtcAligner`).
        diarizer: Who speaks when, `(wav) -> [(turn, speaker label)]`, instead of loading `config.diarization_model`
            (only with `speakers="diarize"`).
        progress: Show a progress bar.

    Returns:
        The summary `summary.md` is written from: recordings, hours in and kept, clips, rejections by reason and
        per speaker (`summary_table` renders it).
    """
    return Segmenter(config, transcriber, aligner, diarizer, progress).run()
