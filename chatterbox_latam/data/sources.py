"""Readers for the raw data formats the project ingests, all yielding the same `SourceRow`.

- the folder layout: `metadata.csv` (audio_path, transcript, speaker_id, duration, optional accent and extra
  columns) with audio paths relative to the dataset root, and optional `transcripts/<stem>.txt`;
- OpenSLR's crowdsourced Latin-American Spanish sets (SLR61 ar, 71 cl, 72 co, 73 pe, 74 pr, 75 ve):
  `line_index*.tsv` beside folders of wavs; the accent comes from the set, the speaker from the file id;
- Common Voice: `validated.tsv` and `clips/*.mp3`, accent read from the `accents` / `locale` columns;
- any Hugging Face audio dataset, by repo id or local path, with column mapping and optional streaming.

Column names are checked before the first row is read; the error lists the columns that exist. A row that is
malformed is yielded with its `problem` set, so the preparation report records it instead of the run stopping.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DataConfig
from ..constants import ACCENTS
from .audio import Rejected


class SourceError(ValueError):
    """The source as a whole cannot be read (wrong columns, unknown layout); the message says what to change."""


@dataclass
class SourceRow:
    """One utterance as the source describes it, before any audio is decoded."""

    row_id: str
    audio: str | bytes | None
    text: str | None
    speaker_id: str
    accent: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    problem: Rejected | None = None
    split: str | None = None
    """The split the source assigns (rows of `validation_path`: validation); None: drawn by sentence."""

    @property
    def source_key(self) -> str | None:
        """Identity of the audio file, so the same file listed twice is caught as a duplicate."""
        return str(Path(self.audio).resolve()) if isinstance(self.audio, str) else None


def detect_format(input_path: str) -> str:
    path = Path(input_path)
    if not path.is_dir():
        return "hub"
    if (path / "metadata.csv").exists():
        return "folder"
    if any(path.rglob("line_index*.tsv")):
        return "openslr"
    if (path / "validated.tsv").exists():
        return "commonvoice"
    return "hub"  # a local dataset folder (save_to_disk, parquet, audiofolder)


def iter_rows(config: DataConfig) -> Iterator[SourceRow]:
    """Rows of `config.input_path` in its format (detected when `format` is auto), up to `max_rows`."""
    if not config.input_path:
        raise SourceError("No input: set data.input_path in the recipe or pass --input PATH_OR_REPO.")
    fmt = detect_format(config.input_path) if config.format == "auto" else config.format
    readers = {"folder": read_folder, "openslr": read_openslr, "commonvoice": read_commonvoice, "hub": read_hub}
    rows = readers[fmt](config)
    for extra in config.extra_inputs:
        if not (Path(extra) / "metadata.csv").exists():
            raise SourceError(f"extra input {extra} has no metadata.csv: extra_inputs take folders in the folder "
                              "layout (the segment command writes one).")
        rows = itertools.chain(rows, _prefixed(read_folder(dataclasses.replace(config, input_path=extra)), extra))
    if config.validation_path:
        if not (Path(config.validation_path) / "metadata.csv").exists():
            raise SourceError(f"validation_path {config.validation_path} has no metadata.csv: it takes a folder in "
                              "the folder layout.")
        rows = itertools.chain(rows, _validation(read_folder(dataclasses.replace(config, input_path=config.validation_path)),
                                                 config.validation_path))
    for index, row in enumerate(rows):
        if config.max_rows is not None and index >= config.max_rows:
            break
        if row.accent is None:
            row.accent = config.default_accent
        yield row


def _validation(rows: Iterator[SourceRow], folder: str) -> Iterator[SourceRow]:
    """`validation_path`'s rows: the validation split, whatever the draw."""
    for row in _prefixed(rows, folder):
        row.split = "validation"
        yield row


def _prefixed(rows: Iterator[SourceRow], folder: str) -> Iterator[SourceRow]:
    """An extra input's rows, their ids naming the folder (each folder has its own metadata.csv)."""
    for row in rows:
        row.row_id = f"{Path(folder).name}/{row.row_id}"
        yield row


def _check_columns(name: str, columns: list[str], required: dict[str, str | None]) -> None:
    missing = {role: column for role, column in required.items() if column is None or column not in columns}
    if missing:
        wanted = ", ".join(f"{role} ('{column}')" if column else role for role, column in missing.items())
        raise SourceError(
            f"{name} lacks the column(s) {wanted}. Its columns are: {columns}. "
            "Map yours with --audio_column / --text_column / --speaker_column / --accent_column."
        )


def _has_bad_bytes(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def read_folder(config: DataConfig) -> Iterator[SourceRow]:
    """The folder layout: metadata.csv with paths relative to the dataset root."""
    root = Path(config.input_path)
    metadata = root / "metadata.csv"
    # Undecodable bytes are kept as surrogates so one bad row is reported, not the whole file refused.
    text = metadata.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = list(reader.fieldnames or [])
    _check_columns(str(metadata), columns, {"audio_path": "audio_path", "speaker_id": "speaker_id"})
    has_transcript = "transcript" in columns
    if not has_transcript and not (root / "transcripts").is_dir():
        raise SourceError(
            f"{metadata} has no 'transcript' column and {root / 'transcripts'} does not exist. Its columns are: {columns}."
        )
    known = {"audio_path", "transcript", "speaker_id", "duration", "accent"}
    for line, record in enumerate(reader, start=2):
        row_id = f"metadata.csv:{line}"
        if None in record or any(value is None for value in record.values()):
            named = (record.get("audio_path") or "").strip()
            yield SourceRow(row_id, str(root / named) if named else None, None, "",
                            problem=Rejected("bad_row", f"expected {len(columns)} fields"))
            continue
        transcript = record.get("transcript", "") if has_transcript else ""
        audio_path = record["audio_path"].strip()
        if not transcript.strip():
            transcript = _read_transcript_file(root / "transcripts" / f"{Path(audio_path).stem}.txt") or transcript
        row = SourceRow(
            row_id=row_id,
            audio=str(root / audio_path),
            text=transcript,
            speaker_id=record["speaker_id"].strip(),
            accent=(record.get("accent") or "").strip().lower() or None,
            extra={k: v for k, v in record.items() if k not in known},
        )
        if _has_bad_bytes(transcript) or _has_bad_bytes(audio_path):
            row.problem = Rejected("transcript_encoding", f"{row_id} is not valid UTF-8")
        elif not audio_path or not row.speaker_id:
            row.problem = Rejected("bad_row", "empty audio_path or speaker_id")
        yield row


def _read_transcript_file(path: Path) -> str:
    if not path.exists():
        return ""
    return path.read_bytes().decode("utf-8", errors="surrogateescape").strip()


def read_openslr(config: DataConfig) -> Iterator[SourceRow]:
    """OpenSLR 61/71-75: `line_index*.tsv` (file id <TAB> transcript) and wav folders; file ids look like
    `arf_00295_00947469802` (accent 'ar', female, speaker 00295)."""
    root = Path(config.input_path)
    wavs = {path.stem: path for path in root.rglob("*.wav")}
    for index_file in sorted(root.rglob("line_index*.tsv")):
        raw = index_file.read_bytes().decode("utf-8", errors="surrogateescape")
        for line_number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            row_id = f"{index_file.relative_to(root)}:{line_number}"
            parts = line.split("\t")
            if len(parts) < 2:
                yield SourceRow(row_id, None, None, "", problem=Rejected("bad_row", "expected 'file_id<TAB>transcript'"))
                continue
            file_id, transcript = parts[0].strip(), parts[1]
            match = re.match(r"([a-z]{2})([fm])_(\d+)_", file_id)
            speaker = f"{match.group(1)}{match.group(2)}_{match.group(3)}" if match else file_id.rsplit("_", 1)[0]
            path = wavs.get(file_id)
            row = SourceRow(
                row_id=row_id,
                audio=str(path) if path else str(index_file.parent / f"{file_id}.wav"),
                text=transcript,
                speaker_id=speaker,
                accent=match.group(1) if match and match.group(1) in ACCENTS else None,
                extra={"gender": {"f": "female", "m": "male"}[match.group(2)]} if match else {},
            )
            if _has_bad_bytes(transcript):
                row.problem = Rejected("transcript_encoding", f"{row_id} is not valid UTF-8")
            yield row


COMMON_VOICE_ACCENTS = [
    (r"m[eé]xic", "mx"),
    (r"argentin|rioplatens|uruguay", "ar"),
    (r"colombi", "co"),
    (r"chile", "cl"),
    (r"per[uú]|andin", "pe"),
    (r"puerto ?ric|caribe", "pr"),
    (r"venezol", "ve"),
]


def common_voice_accent(*labels: str) -> str | None:
    """Maps Common Voice's free-text accent labels (or a locale like es-MX) to the project's accent codes."""
    for label in labels:
        label = (label or "").lower()
        locale = re.fullmatch(r"es[-_]([a-z]{2})", label)
        if locale and locale.group(1) in ACCENTS:
            return locale.group(1)
        for pattern, accent in COMMON_VOICE_ACCENTS:
            if re.search(pattern, label):
                return accent
    return None


def read_commonvoice(config: DataConfig) -> Iterator[SourceRow]:
    """Common Voice: `validated.tsv` (client_id, path, sentence, accents, locale, ...) and `clips/`."""
    root = Path(config.input_path)
    table = root / "validated.tsv"
    raw = table.read_bytes().decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    columns = list(reader.fieldnames or [])
    _check_columns(str(table), columns, {"audio": "path", "text": "sentence", "speaker": "client_id"})
    for line, record in enumerate(reader, start=2):
        row_id = f"validated.tsv:{line}"
        sentence = record.get("sentence") or ""
        row = SourceRow(
            row_id=row_id,
            audio=str(root / "clips" / (record.get("path") or "")),
            text=sentence,
            speaker_id=(record.get("client_id") or "")[:16],
            accent=common_voice_accent(record.get("accents", ""), record.get("accent", ""), record.get("variant", ""),
                                       record.get("locale", "")),
            extra={k: record[k] for k in ("gender", "age", "locale") if record.get(k)},
        )
        if _has_bad_bytes(sentence):
            row.problem = Rejected("transcript_encoding", f"{row_id} is not valid UTF-8")
        elif not record.get("path") or not row.speaker_id:
            row.problem = Rejected("bad_row", "empty path or client_id")
        yield row


TEXT_COLUMNS = ("transcript", "text", "sentence", "transcription", "normalized_text")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")


def _pick(columns: list[str], chosen: str | None, candidates: tuple[str, ...]) -> str | None:
    if chosen:
        return chosen
    return next((c for c in candidates if c in columns), None)


def read_hub(config: DataConfig) -> Iterator[SourceRow]:
    """Any `datasets` audio dataset: a Hub repo id, a local dataset folder, or a `save_to_disk` folder."""
    import datasets

    source = config.input_path
    saved = [Path(source) / name for name in ("dataset_dict.json", "state.json")]
    if any(path.exists() for path in saved):
        loaded = datasets.load_from_disk(source)
        dataset = loaded[config.dataset_split] if isinstance(loaded, datasets.DatasetDict) else loaded
        if config.streaming:
            dataset = dataset.to_iterable_dataset()
    else:
        dataset = datasets.load_dataset(
            source, config.dataset_config_name, split=config.dataset_split, streaming=config.streaming
        )
    columns = list(dataset.column_names or dataset.features.keys())
    text_column = _pick(columns, config.text_column, TEXT_COLUMNS)
    speaker_column = _pick(columns, config.speaker_column, SPEAKER_COLUMNS)
    accent_column = _pick(columns, config.accent_column, ("accent",))
    _check_columns(source, columns, {"audio": config.audio_column, "text": text_column, "speaker": speaker_column})
    if config.accent_column and accent_column not in columns:
        _check_columns(source, columns, {"accent": config.accent_column})
    # Undecoded: this module's decoder reports a corrupt file instead of raising mid-iteration.
    dataset = dataset.cast_column(config.audio_column, datasets.Audio(decode=False))
    used = {config.audio_column, text_column, speaker_column, accent_column}
    for index, record in enumerate(dataset):
        row_id = f"{config.dataset_split}:{index}"
        audio: Any = record[config.audio_column] or {}
        payload = audio.get("bytes") or audio.get("path")
        accent = record.get(accent_column) if accent_column else None
        row = SourceRow(
            row_id=row_id,
            audio=bytes(payload) if isinstance(payload, (bytes, bytearray)) else payload,
            text=record[text_column] if isinstance(record[text_column], str) else "",
            speaker_id=str(record[speaker_column]),
            accent=common_voice_accent(str(accent)) or (str(accent).lower() if accent else None),
            extra={k: str(v) for k, v in record.items() if k not in used and isinstance(v, (str, int, float))},
        )
        if payload is None:
            row.problem = Rejected("missing_file", "the audio cell is empty")
        yield row

