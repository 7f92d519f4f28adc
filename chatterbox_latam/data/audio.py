"""Decoding and cleaning of one clip, with a reason for every clip that cannot be used.

`decode_audio` reads any file or bytes libsndfile or FFmpeg (through torchcodec) can read and notices truncated
files; `clean_audio` turns what it returns into what the feature extractor wants: mono, resampled, leading and
trailing silence trimmed, loudness normalised (pyloudnorm, ITU-R BS.1770), duration within bounds. Problems
raise `Rejected` with a short machine-readable reason that the preparation report records.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..constants import S3GEN_SR


class Rejected(Exception):
    """A row that cannot be used. `reason` is a stable code (see REASONS); `detail` says what is wrong."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


REASONS = {
    "missing_file": "the audio file named by the row does not exist",
    "empty_file": "the audio file has zero bytes",
    "not_audio": "the file is not audio any decoder can read",
    "truncated": "the file ends before the length its header declares",
    "zero_length": "the audio decodes to no samples",
    "silence": "the clip holds only silence",
    "too_short": "shorter than min_audio_length after trimming silence",
    "too_long": "longer than max_audio_length after trimming silence",
    "empty_transcript": "the transcript is empty or whitespace",
    "transcript_encoding": "the transcript's bytes are not valid UTF-8",
    "unsupported_text": "the normalised transcript still holds characters the tokenizer cannot read",
    "duplicate": "the same audio (or the same file) appeared earlier",
    "bad_row": "the row itself is malformed",
}


@dataclass
class CleaningConfig:
    """What `clean_audio` does; the fields mirror the recipe's `data` section."""

    sampling_rate: int = S3GEN_SR
    min_seconds: float = 0.5
    max_seconds: float = 30.0
    trim_silence: bool = True
    trim_top_db: float = 40.0
    target_loudness: float | None = -23.0
    silence_peak_db: float = -50.0


def _wav_truncated(data: bytes) -> bool:
    """True when a RIFF/WAVE file's data chunk declares more bytes than the file holds."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    position = 12
    while position + 8 <= len(data):
        chunk_id, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF mean "unknown length" (streamed writers); anything else must fit.
            return size not in (0, 0xFFFFFFFF) and position + 8 + size > len(data)
        position += 8 + size + (size & 1)
    return True  # no data chunk before the end of the file


def decode_audio(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """Decodes a file path or encoded bytes to float32 `(channels, samples)` and its sample rate."""
    import soundfile as sf

    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise Rejected("missing_file", str(path))
        data = path.read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise Rejected("empty_file")
    if _wav_truncated(data):
        raise Rejected("truncated", "the WAV data chunk is shorter than its header says")
    try:
        with sf.SoundFile(io.BytesIO(data)) as handle:
            declared, rate = handle.frames, handle.samplerate
            samples = handle.read(dtype="float32", always_2d=True).T
    except (sf.LibsndfileError, RuntimeError, TypeError):
        samples, rate, declared = _decode_with_ffmpeg(data)
    if samples.shape[-1] == 0:
        raise Rejected("zero_length")
    if declared and samples.shape[-1] < 0.98 * declared:
        raise Rejected("truncated", f"decoded {samples.shape[-1]} of {declared} declared samples")
    if not np.isfinite(samples).all():
        raise Rejected("not_audio", "decoded samples are not finite")
    return samples, rate


def _decode_with_ffmpeg(data: bytes) -> tuple[np.ndarray, int, int]:
    """Formats libsndfile does not read (m4a, opus in webm, ...), through torchcodec's FFmpeg decoder."""
    try:
        from torchcodec.decoders import AudioDecoder

        decoder = AudioDecoder(data)
        decoded = decoder.get_all_samples()
    except (RuntimeError, ValueError) as error:
        raise Rejected("not_audio", str(error).splitlines()[-1][:200]) from None
    rate = decoded.sample_rate
    header_seconds = decoder.metadata.duration_seconds_from_header
    declared = int(header_seconds * rate) if header_seconds else 0
    return decoded.data.numpy().astype(np.float32), rate, declared


def to_mono(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=0) if samples.ndim == 2 else samples


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    import librosa

    if orig_sr == target_sr:
        return wav.astype(np.float32)
    return librosa.resample(wav, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


def clean_audio(samples: np.ndarray, rate: int, config: CleaningConfig) -> np.ndarray:
    """Decoded samples -> mono float32 at `config.sampling_rate`, trimmed and loudness-normalised."""
    import librosa
    import pyloudnorm

    wav = resample(to_mono(samples), rate, config.sampling_rate)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak == 0.0 or 20 * np.log10(peak) < config.silence_peak_db:
        raise Rejected("silence", f"peak {20 * np.log10(peak) if peak else float('-inf'):.1f} dBFS")
    if config.trim_silence:
        wav, _ = librosa.effects.trim(wav, top_db=config.trim_top_db, frame_length=1024, hop_length=256)
    seconds = len(wav) / config.sampling_rate
    if seconds < config.min_seconds:
        raise Rejected("too_short", f"{seconds:.2f} s < {config.min_seconds} s")
    if seconds > config.max_seconds:
        raise Rejected("too_long", f"{seconds:.2f} s > {config.max_seconds} s")
    if config.target_loudness is not None:
        meter = pyloudnorm.Meter(config.sampling_rate, block_size=min(0.4, seconds))
        loudness = meter.integrated_loudness(wav)
        if not np.isfinite(loudness):
            raise Rejected("silence", "no block above the loudness gate")
        wav = pyloudnorm.normalize.loudness(wav, loudness, config.target_loudness)
        # Loud targets can push peaks past full scale: scale down rather than clip.
        peak = float(np.abs(wav).max())
        if peak > 0.99:
            wav = wav * (0.99 / peak)
    return wav.astype(np.float32)


def encode_flac(wav: np.ndarray, rate: int) -> bytes:
    """16-bit FLAC bytes: what the prepared dataset stores in its Audio column."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wav, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()

