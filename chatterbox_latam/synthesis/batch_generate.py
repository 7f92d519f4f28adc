"""Batch synthesis: one WAV per line of a text file, resumable, with a manifest of what was written.

Output names come from the line number (`audio_0007.wav` is line 7), so a re-run after a crash or with more lines
skips what is already there; each WAV is written to a temporary file and renamed, so an existing file is always
complete. A line that cannot be spoken is reported and skipped; the manifest (`manifest.csv`) records every
line's outcome and is rewritten atomically at the end.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf

from ..data.text import split_sentences
from ..utils import write_atomic, write_wav
from .config import GenerationSettings
from .tts import ChatterboxLatamTTS

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"


@dataclass
class ManifestRow:
    line: int
    text: str
    path: str
    seconds: float
    status: str  # written | existing | failed
    error: str = ""


def read_texts(texts_file: str | os.PathLike) -> list[tuple[int, str]]:
    """(1-based line number, text) for every non-blank line."""
    lines = Path(texts_file).read_text(encoding="utf-8").splitlines()
    return [(i, line.strip()) for i, line in enumerate(lines, start=1) if line.strip()]


def batch_generate(model: ChatterboxLatamTTS, texts_file: str | os.PathLike, reference: str | os.PathLike | None,
                   output_dir: str | os.PathLike, settings: GenerationSettings | None = None, progress: bool = True,
                   lines_together: int = 1) -> list[ManifestRow]:
    """Speaks every non-blank line of `texts_file` into `output_dir/audio_NNNN.wav` (see the module docstring).

    Args:
        model: The loaded model.
        texts_file: UTF-8 text, one utterance per line.
        reference: The voice to clone; None for the model's default voice.
        output_dir: Where the WAVs and `manifest.csv` go.
        settings: How to sample (`GenerationSettings`; its `seed` seeds each line alike).
        progress: Show a progress bar.
        lines_together: Lines given to `ChatterboxLatamTTS.generate_batch` at once (decoded `model.batch_size`
            sentences at a time); each line's WAV is written when its group is done.

    Returns:
        One `ManifestRow` per non-blank line: written, existing (kept from an earlier run) or failed (with why).
    """
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[int, ManifestRow] = {}
    todo = []
    for line, text in read_texts(texts_file):
        path = output_dir / f"audio_{line:04d}.wav"
        if path.exists():
            rows[line] = ManifestRow(line, text, path.name, round(sf.info(str(path)).duration, 3), "existing")
        elif not split_sentences(text):  # nothing to speak: report, go on with the next line
            logger.warning("line %d skipped: nothing to speak", line)
            rows[line] = ManifestRow(line, text, "", 0.0, "failed", "nothing to speak")
        else:
            todo.append((line, text, path))
    with tqdm(total=len(todo), desc="generate", unit="line", disable=not progress) as bar:
        for start in range(0, len(todo), max(1, lines_together)):
            group = todo[start: start + max(1, lines_together)]
            try:
                wavs = model.generate_batch([text for _, text, _ in group], reference, settings)
            except ValueError as error:  # e.g. an accent the model lacks: the lines are reported, the rest go on
                logger.warning("lines %s skipped: %s", [line for line, _, _ in group], error)
                rows.update({line: ManifestRow(line, text, "", 0.0, "failed", str(error)) for line, text, _ in group})
                bar.update(len(group))
                continue
            for (line, text, path), wav in zip(group, wavs, strict=True):
                wav = wav.squeeze(0).numpy()
                write_wav(path, wav, model.sr)
                rows[line] = ManifestRow(line, text, path.name, round(len(wav) / model.sr, 3), "written")
            bar.update(len(group))
    ordered = [rows[line] for line in sorted(rows)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(ManifestRow.__dataclass_fields__))
    writer.writeheader()
    writer.writerows(asdict(row) for row in ordered)
    write_atomic(output_dir / MANIFEST_NAME, out.getvalue().encode("utf-8"))
    return ordered

