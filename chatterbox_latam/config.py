"""Recipe sections as dataclasses: every field has a help text and is validated where it is built.

A recipe is YAML in the seed's shape (`model:`, `data:`, ...); `chatterbox_latam.recipe.parse_recipe` maps each
section to one dataclass here and lets the command line override any field as `--field value`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .modeling import LAYOUTS

FORMATS = ("auto", "seed", "openslr", "commonvoice", "hub")
ACCENTS = ("mx", "ar", "co", "cl", "pe", "pr", "ve")


@dataclass
class ModelConfig:
    """Which Chatterbox to start from."""

    base_model: str = field(
        default="ResembleAI/chatterbox",
        metadata={"help": "Hub repo id or local folder of the base checkpoint (upstream file layout)."},
    )
    model_variant: str | None = field(
        default=None,
        metadata={
            "help": f"Checkpoint layout, one of {sorted(LAYOUTS)}; default: recognised from the repo id or the files."
        },
    )
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    train_s3gen: bool = field(
        default=False,
        metadata={"help": "Also adapt S3Gen; preparation then also stores 24 kHz mels and CAMPPlus x-vectors."},
    )

    def __post_init__(self):
        if self.model_variant is not None and self.model_variant not in LAYOUTS:
            raise ValueError(f"model_variant={self.model_variant!r}: use one of {sorted(LAYOUTS)} or leave it unset.")


@dataclass
class DataConfig:
    """Where the raw data comes from and how it becomes the prepared feature dataset."""

    input_path: str | None = field(
        default=None,
        metadata={"help": "Raw data: a folder (seed layout, OpenSLR, Common Voice) or a Hugging Face dataset repo id."},
    )
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
    sampling_rate: int = field(default=24_000, metadata={"help": "Rate of the cleaned clips stored in the dataset."})
    min_audio_length: float = field(default=0.5, metadata={"help": "Shortest clip kept, in seconds, after trimming."})
    max_audio_length: float = field(default=30.0, metadata={"help": "Longest clip kept, in seconds, after trimming."})
    trim_silence: bool = field(default=True, metadata={"help": "Trim leading and trailing silence."})
    trim_top_db: float = field(default=40.0, metadata={"help": "Silence threshold for trimming, dB below the peak."})
    target_loudness: float | None = field(
        default=-23.0, metadata={"help": "Integrated loudness (LUFS) clips are normalised to; null keeps the level."}
    )
    normalize_text: bool = field(
        default=True, metadata={"help": "Spell out numbers, dates, currency, abbreviations (chatterbox_latam.text)."}
    )
    # Features and splits
    max_prompt_seconds: float = field(
        default=6.0, metadata={"help": "Length of the conditioning prompt taken from another utterance (<= 6 s)."}
    )
    feature_batch_seconds: float = field(
        default=120.0, metadata={"help": "Audio seconds (padded) per feature-extraction batch."}
    )
    device: str | None = field(default=None, metadata={"help": "Device for feature extraction (default: cuda if available)."})
    validation_size: float = field(default=0.1, metadata={"help": "Share of utterances (or speakers) for validation."})
    test_size: float = field(default=0.1, metadata={"help": "Share of utterances (or speakers) for the test split."})
    heldout_speakers: list[str] | None = field(
        default=None,
        metadata={"help": "Split by speaker: these speakers form the test split (validation takes utterances of the rest)."},
    )
    seed: int = field(default=42, metadata={"help": "Seed for prompt choice and splits."})

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format={self.format!r}: use one of {FORMATS}.")
        if not 0 < self.min_audio_length < self.max_audio_length:
            raise ValueError(
                f"min_audio_length={self.min_audio_length} and max_audio_length={self.max_audio_length}: "
                "need 0 < min_audio_length < max_audio_length."
            )
        if not 0 < self.max_prompt_seconds <= 6.0:
            raise ValueError(
                f"max_prompt_seconds={self.max_prompt_seconds}: T3 takes at most 150 prompt tokens (6 s); use 0 < x <= 6."
            )
        for name in ("validation_size", "test_size"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name}={getattr(self, name)}: use a share in [0, 0.5).")
        for accent in [self.default_accent, *(self.accents or [])]:
            if accent is not None and accent not in ACCENTS:
                raise ValueError(f"accent {accent!r}: use one of {ACCENTS}.")
