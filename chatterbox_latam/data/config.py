"""What the data stage is asked: where the raw data comes from and how it becomes the prepared feature dataset (a
recipe's `data:` section), and how long recordings are cut into clips (`segmentation:`). No torch import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..constants import (
    ACCENTS,
    DEFAULT_ALIGNER,
    DEFAULT_ASR,
    DEFAULT_DIARIZATION,
    S3GEN_SR,
)
from ..utils import default_device


FORMATS = ("auto", "folder", "openslr", "commonvoice", "hub")
SPEAKER_MODES = ("one", "per-file", "diarize")


@dataclass
class DataConfig:
    """Where the raw data comes from and how it becomes the prepared feature dataset (a recipe's `data:` section)."""

    aliases: ClassVar[dict[str, str]] = {"train_path": "input_path", "val_path": "validation_path",
                                         "training.max_audio_length": "max_audio_length"}
    """Older recipes' names: `train_path` / `val_path` for a training folder and a validation folder, and
    `max_audio_length` in the `training:` section."""

    input_path: str | None = field(
        default=None,
        metadata={"help": "Raw data: a folder (the folder layout: audio/<speaker>/*.wav with metadata.csv of "
                          "audio_path, transcript, speaker_id[, duration, accent]; OpenSLR; Common Voice) or a "
                          "Hugging Face dataset repo id."},
    )
    validation_path: str | None = field(default=None, metadata={
        "help": "A folder in the folder layout whose clips form the validation split (instead of validation_size "
                "of input_path's sentences); other readings of its sentences are left out of the other splits."})
    extra_inputs: list[str] = field(default_factory=list, metadata={
        "help": "More folders in the folder layout read beside input_path (the segment command's output)."})
    format: str = field(default="auto", metadata={"help": f"Input format, one of {FORMATS}."})
    prepared_dir: str = field(
        default="runs/data",
        metadata={"help": "Folder the prepared dataset, its report and its cache are written to (and training reads)."},
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Cleaned-clip and feature cache; default: <prepared_dir>/cache."}
    )
    dataset_hub_id: str | None = field(
        default=None, metadata={"help": "Push the prepared dataset to this Hub dataset repo (USER/NAME)."}
    )
    private: bool = field(default=False, metadata={"help": "Create the Hub dataset repo as private."})
    dataset_license: str | None = field(
        default=None,
        metadata={"help": "Licence id for the dataset card (default: the source's, e.g. cc-by-sa-4.0 for OpenSLR)."},
    )
    language: str = field(default="es", metadata={"help": "Language tag given to the multilingual tokenizer."})
    default_accent: str | None = field(
        default=None, metadata={"help": f"Accent for rows whose source has none ({ACCENTS})."}
    )
    accents: list[str] | None = field(
        default=None, metadata={"help": "Keep only rows with these accents (default: all)."}
    )
    # Hugging Face datasets input
    dataset_config_name: str | None = field(default=None, metadata={"help": "Config name of a Hub dataset."})
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset to read."})
    streaming: bool = field(default=False, metadata={"help": "Stream a Hub dataset instead of downloading it whole."})
    audio_column: str = field(default="audio", metadata={"help": "Audio column of a Hub dataset."})
    text_column: str | None = field(
        default=None, metadata={"help": "Transcript column (default: transcript, text, sentence or transcription)."}
    )
    speaker_column: str | None = field(
        default=None, metadata={"help": "Speaker column (default: speaker_id, speaker or client_id)."}
    )
    accent_column: str | None = field(default=None, metadata={"help": "Accent column (default: accent if present)."})
    max_rows: int | None = field(default=None, metadata={"help": "Read at most this many source rows (for trials)."})
    # Cleaning
    sampling_rate: int = field(default=S3GEN_SR, metadata={
        "help": f"Rate of the cleaned clips stored in the dataset: {S3GEN_SR} (S3Gen's rate; the mel features and "
                "the references are computed at it)."})
    min_audio_length: float = field(default=0.5, metadata={"help": "Shortest clip kept, in seconds, after trimming."})
    max_audio_length: float = field(default=30.0, metadata={"help": "Longest clip kept, in seconds, after trimming."})
    trim_silence: bool = field(default=True, metadata={"help": "Trim leading and trailing silence."})
    trim_top_db: float = field(default=40.0, metadata={"help": "Silence threshold for trimming, dB below the peak."})
    target_loudness: float | None = field(
        default=-23.0, metadata={"help": "Integrated loudness (LUFS) clips are normalised to; null keeps the level."}
    )
    normalize_text: bool = field(
        default=True, metadata={"help": "Spell out numbers, dates, currency, abbreviations (chatterbox_latam.data.text)."}
    )
    # Features and splits
    max_prompt_seconds: float = field(
        default=6.0, metadata={"help": "Length of T3's conditioning prompt, taken from a reference of the speaker "
                                       "(<= 6 s, upstream's; a shorter one is mirrored at inference)."}
    )
    feature_batch_seconds: float = field(
        default=120.0, metadata={"help": "Audio seconds (padded) per feature-extraction batch."}
    )
    device: str | None = field(default=None, metadata={"help": "Device for feature extraction (default: cuda if available)."})
    validation_size: float = field(default=0.1, metadata={
        "help": "Share of clips for validation, drawn as whole sentences: every reading of a sentence goes to the "
                "same split."})
    test_size: float = field(default=0.1, metadata={
        "help": "Share of clips for the test split, drawn as whole sentences (unless heldout_speakers)."})
    heldout_speakers: list[str] | None = field(
        default=None,
        metadata={"help": "Split by speaker: these speakers form the test split, which only evaluation reads."},
    )
    validation_speakers: list[str] | None = field(
        default=None,
        metadata={"help": "These speakers form the validation split: checkpoint selection (metric_for_best_model) then "
                          "scores voices not in training, and never the test split's."},
    )
    split_seed: int = field(default=42, metadata={"help": "Seed for prompt choice and splits."})
    self_prompt: bool = field(
        default=False,
        metadata={"help": "A speaker's only clip lends its own last part as its prompt (the loss stops before it, so "
                          "its stop token is never supervised). Off: such rows are left out of training and counted "
                          "in the summary."},
    )
    self_prompt_min_seconds: float = field(
        default=3.0,
        metadata={"help": "With self_prompt: the shortest own last part a lone clip may lend (the prompt is the last "
                          "min(max_prompt_seconds, half the clip)); a shorter lone clip is left out of training."},
    )

    def __post_init__(self):
        if self.format == "seed":  # the folder layout's older name
            self.format = "folder"
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r}: use one of {FORMATS}.")
        if not 0 < self.min_audio_length < self.max_audio_length:
            raise ValueError(
                f"min_audio_length={self.min_audio_length} and max_audio_length={self.max_audio_length}: "
                "need 0 < min_audio_length < max_audio_length."
            )
        if self.sampling_rate != S3GEN_SR:
            raise ValueError(f"sampling_rate={self.sampling_rate}: the prepared clips must be stored at {S3GEN_SR} Hz "
                             "(S3Gen's rate, which the features and references assume); sources at any rate are "
                             "resampled to it.")
        if not 0 < self.max_prompt_seconds <= 6.0:
            raise ValueError(
                f"max_prompt_seconds={self.max_prompt_seconds}: T3 takes at most 150 prompt tokens (6 s); use 0 < x <= 6."
            )
        for name in ("validation_size", "test_size"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name}={getattr(self, name)}: use a share in [0, 0.5).")
        both = sorted(set(self.heldout_speakers or []) & set(self.validation_speakers or []))
        if both:
            raise ValueError(f"speakers {both} are in heldout_speakers and validation_speakers: a speaker belongs to "
                             "one split.")
        for accent in [self.default_accent, *(self.accents or [])]:
            if accent is not None and accent not in ACCENTS:
                raise ValueError(f"accent {accent!r}: use one of {ACCENTS}.")


@dataclass
class SegmentConfig:
    """What `chatterbox-latam segment` asks for (recipe section `segmentation`): long recordings (podcasts,
    audiobooks, interviews, a read script) -> clips in the folder layout that the prepare command reads."""

    input: list[str] = field(default_factory=list, metadata={
        "help": "Audio files or folders of them (searched recursively).", "nargs": "+"})
    output_dir: str = field(default="runs/segmented", metadata={
        "help": "Where audio/<speaker>/*.wav, metadata.csv, rejected.jsonl and summary.md go."})
    transcripts: str | None = field(default=None, metadata={
        "help": "Folder of known texts, one <audio file stem>.txt per recording (an audiobook's chapters): the "
                "text is aligned to the audio instead of transcribed."})
    script: str | None = field(default=None, metadata={
        "help": "A read script: one line per utterance, read in order in one take (needs no model but the VAD)."})
    language: str = field(default="es", metadata={"help": "Language the ASR transcribes."})
    accent: str | None = field(default=None, metadata={"help": "Accent label of every clip.",
                                                        "choices": list(ACCENTS)})
    speakers: str = field(default="one", metadata={
        "help": "one speaker for every input (--speaker_id), one per file (its name), or diarize (pyannote; a "
                "clip where speakers overlap is rejected).", "choices": list(SPEAKER_MODES)})
    speaker_id: str = field(default="speaker_001", metadata={"help": "The speaker's id with --speakers one."})
    asr_model: str = field(default=DEFAULT_ASR, metadata={"help": "ASR checkpoint (Hub id or folder) for "
                                                                  "recordings without text."})
    aligner_model: str = field(default=DEFAULT_ALIGNER, metadata={
        "help": "Character CTC checkpoint that aligns known text (--transcripts)."})
    diarization_model: str = field(default=DEFAULT_DIARIZATION, metadata={
        "help": "pyannote pipeline for --speakers diarize (a gated Hub repo: accept its terms, set HF_TOKEN)."})
    min_seconds: float = field(default=3.0, metadata={"help": "Shortest clip (a script's line is kept whole)."})
    max_seconds: float = field(default=15.0, metadata={"help": "Longest clip."})
    max_pause: float = field(default=2.0, metadata={"help": "Longest pause kept inside a clip (seconds)."})
    padding: float = field(default=0.2, metadata={"help": "Silence kept before and after each clip's speech "
                                                          "(at most half the pause)."})
    vad_threshold: float = field(default=0.5, metadata={"help": "Silero VAD's speech probability threshold."})
    min_silence: float = field(default=0.1, metadata={"help": "Shortest pause the VAD separates speech at."})
    min_logprob: float = field(default=-1.0, metadata={
        "help": "Reject a clip whose ASR average log-probability per token is lower (Whisper's own failure "
                "threshold)."})
    min_align_score: float = field(default=0.2, metadata={
        "help": "Reject a clip whose aligned words' mean frame probability is lower (known text)."})
    chars_per_second: list[float] = field(default_factory=lambda: [5.0, 30.0], metadata={
        "help": "Plausible speaking rates (letters per second of clip): outside them the text does not fit the "
                "audio.", "nargs": 2})
    script_tolerance: float = field(default=1.6, metadata={
        "help": "A script line whose speech is longer or shorter than expected by more than this factor is "
                "checked by the ASR (or rejected offline)."})
    max_cer: float = field(default=0.25, metadata={"help": "Largest character error rate between the ASR and a "
                                                            "script line for the line to be kept."})
    min_dnsmos: float | None = field(default=3.0, metadata={
        "help": "Reject a clip whose DNSMOS overall score is lower (music, noise, distortion; 3.0 is the Emilia "
                "pipeline's threshold); none: keep all."})
    device: str = field(default_factory=default_device, metadata={"help": "Device of the ASR and aligner."})

    def __post_init__(self):
        if self.speakers not in SPEAKER_MODES:
            raise ValueError(f"speakers={self.speakers!r}: use one of {list(SPEAKER_MODES)}.")
        if self.transcripts and self.script:
            raise ValueError("give either --transcripts (a text per recording) or --script (one read script), "
                             "not both.")
        if not 0 < self.min_seconds < self.max_seconds:
            raise ValueError(f"min_seconds={self.min_seconds}, max_seconds={self.max_seconds}: use 0 < min < max.")
        if len(self.chars_per_second) != 2 or not 0 <= self.chars_per_second[0] < self.chars_per_second[1]:
            raise ValueError(f"chars_per_second={self.chars_per_second}: give a low and a high rate, low < high.")
