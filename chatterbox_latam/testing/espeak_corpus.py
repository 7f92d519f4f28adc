"""A small multi-speaker Spanish corpus spoken by espeak-ng, in the folder layout (audio/<speaker>/*.wav, metadata.csv).

Each speaker is an espeak-ng `es-419` voice variant with its own pitch and speed, labelled with one accent code
(mx, ar, co, cl, pe are stand-in labels: espeak has one Latin-American voice). The sentences carry what the text
normaliser must handle: numbers, dates, percentages, currency, abbreviations, ¿¡, ñ and accented vowels.

    python -m chatterbox_latam.testing.espeak_corpus --output_dir runs/demo/corpus
    dataset/
      audio/speaker_001/audio_001.wav ...
      metadata.csv   (audio_path,transcript,speaker_id,duration,accent)
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..utils import staged_directory

SENTENCES = [
    "Hola, ¿cómo estás? Buenos días y bienvenido.",
    "El Dr. Pérez llegó a las 10:30 con la Sra. Núñez.",
    "La inflación subió un 4,5% durante el año 2023.",
    "El boleto cuesta $1.250 y el taxi $85 más.",
    "¡Qué alegría verte otra vez, mi querido amigo!",
    "Nací el 15/03/1990 en una pequeña ciudad del norte.",
    "El niño comió piña, mañana comerá ñame.",
    "Llegó en el 3er lugar de la carrera de 5 km.",
    "¿Dónde está la estación de autobuses, por favor?",
    "Compramos 12 manzanas, 3 peras, etc.",
    "La reunión es el 1 de mayo en la Av. Reforma.",
    "El pingüino y la cigüeña viven en el zoológico.",
]


@dataclass(frozen=True)
class Speaker:
    speaker_id: str
    voice: str
    pitch: int
    speed: int
    accent: str


SPEAKERS = [
    Speaker("speaker_001", "es-419+f2", 60, 160, "mx"),
    Speaker("speaker_002", "es-419+m3", 40, 150, "mx"),
    Speaker("speaker_003", "es-419+f4", 70, 170, "ar"),
    Speaker("speaker_004", "es-419+m1", 35, 155, "co"),
    Speaker("speaker_005", "es-419+f1", 55, 145, "cl"),
    Speaker("speaker_006", "es-419+m7", 45, 165, "pe"),
]


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, path: Path, voice: str = "es-419", pitch: int = 50, speed: int = 160) -> None:
    """Writes espeak-ng's rendering of `text` (22.05 kHz mono WAV) to `path`."""
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed: `apt-get install espeak-ng` (make demo/test does it).")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", str(path), text],
        check=True, capture_output=True,
    )


def generate_corpus(output_dir: str | os.PathLike, speakers: list[Speaker] | None = None,
                    sentences: list[str] | None = None, utterances_per_speaker: int = 8) -> Path:
    """Writes the corpus to `output_dir` (reused when its metadata.csv exists) and returns the folder.

    Each speaker reads `utterances_per_speaker` sentences, starting at a different offset so speakers share
    some sentences but not all. Written in a temporary sibling and renamed into place when complete.
    """
    output_dir = Path(output_dir)
    if (output_dir / "metadata.csv").exists():
        return output_dir
    speakers = speakers or SPEAKERS
    sentences = sentences or SENTENCES
    with staged_directory(output_dir) as staging:
        rows = []
        for s, speaker in enumerate(speakers):
            for u in range(utterances_per_speaker):
                text = sentences[(s * 3 + u) % len(sentences)]
                relative = Path("audio") / speaker.speaker_id / f"audio_{u + 1:03d}.wav"
                speak(text, staging / relative, speaker.voice, speaker.pitch, speaker.speed)
                duration = sf.info(str(staging / relative)).duration
                rows.append([relative.as_posix(), text, speaker.speaker_id, f"{duration:.2f}", speaker.accent])
        with open(staging / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["audio_path", "transcript", "speaker_id", "duration", "accent"])
            writer.writerows(rows)
    return output_dir


LONG_SPEAKER = Speaker("speaker_007", "es-419+m2", 50, 150, "mx")
"""The voice of the long recording: a speaker the corpus does not hold, so its clips add to it."""
PAUSES = (0.9, 1.4, 0.7, 1.8, 1.1, 0.8, 1.6, 1.2)
"""Seconds of silence between the long recording's sentences, in turn (longer than espeak's own pauses)."""


def long_recording(output_dir: str | os.PathLike, speaker: Speaker = LONG_SPEAKER,
                   sentences: list[str] | None = None, lead: float = 0.6) -> Path:
    """One long take of `sentences` read in order (each trimmed of espeak's own silence, joined by `PAUSES`), as a
    voice talent reads a prompt list: `recording.wav`, its read script `script.txt` (one line per sentence), its
    text `transcripts/recording.txt` (the chapter-text case), and `sentences.json` (each sentence's start and end
    in seconds: where a cut may fall). Reused when complete."""
    import json

    import librosa
    import numpy as np

    output_dir = Path(output_dir)
    if (output_dir / "sentences.json").exists():
        return output_dir
    sentences = sentences or SENTENCES
    with staged_directory(output_dir) as staging:
        pieces, spans, rate, position = [], [], None, lead
        for index, text in enumerate(sentences):
            speak(text, staging / "tmp.wav", speaker.voice, speaker.pitch, speaker.speed)
            wav, rate = sf.read(str(staging / "tmp.wav"), dtype="float32")
            wav, _ = librosa.effects.trim(wav, top_db=40)
            pause = lead if index == 0 else PAUSES[(index - 1) % len(PAUSES)]
            pieces += [np.zeros(int(pause * rate), np.float32), wav]
            position = sum(len(p) for p in pieces) / rate
            spans.append([round(position - len(wav) / rate, 3), round(position, 3)])
        (staging / "tmp.wav").unlink()
        pieces.append(np.zeros(int(lead * rate), np.float32))
        sf.write(str(staging / "recording.wav"), np.concatenate(pieces), rate, subtype="PCM_16")
        (staging / "script.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
        (staging / "transcripts").mkdir()
        (staging / "transcripts" / "recording.txt").write_text(" ".join(sentences) + "\n", encoding="utf-8")
        (staging / "sentences.json").write_text(json.dumps({"speaker_id": speaker.speaker_id, "accent": speaker.accent,
                                                            "sentences": sentences, "spans": spans}, indent=1))
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/demo/corpus", help="Folder to write the corpus to.")
    parser.add_argument("--utterances_per_speaker", type=int, default=8, help="Sentences each speaker reads.")
    parser.add_argument("--long_recording", default=None,
                        help="Also write one long take of every sentence by another voice, with its read script, "
                             "to this folder (what segment_recordings.py cuts).")
    args = parser.parse_args(argv)
    path = generate_corpus(args.output_dir, utterances_per_speaker=args.utterances_per_speaker)
    print(f"corpus: {path}")
    if args.long_recording:
        print(f"long recording: {long_recording(args.long_recording)}")


if __name__ == "__main__":
    main()

