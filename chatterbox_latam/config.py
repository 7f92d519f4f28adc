"""Every recipe as dataclasses, and the parser that reads them: one schema for every script.

A recipe is YAML in the seed's shape (`model:`, `data:`, ...), one section per dataclass here; every field has a
help text and is validated where it is built. `parse_recipe` reads `--config FILE`, uses its values as defaults,
and lets any field be overridden as `--field value` (trl's `TrlParser` does the same). Field names are unique
across sections, so the command line needs no section prefix. A key the schema does not know is an error that
lists the keys it does know. Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .constants import (
    ACCENTS,
    GGUF_TYPES,
    LAYOUTS,
    MEANFLOW_REPO,
    MODES,
    S3GEN_DECODERS,
    S3GEN_MODES,
    S3GEN_SR,
    T3_MODELS,
)
from .utils import default_device

FORMATS = ("auto", "seed", "openslr", "commonvoice", "hub")
DEFAULT_ASR = "openai/whisper-large-v3"
DEFAULT_ACCENT_MODEL = "Jzuluaga/accent-id-commonaccent_xlsr-es-spanish"
T3_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
S3GEN_LORA_TARGETS = ["linear_q", "linear_k", "linear_v", "linear_out", "to_q", "to_k", "to_v", "to_out.0"]


@dataclass
class ModelConfig:
    """Which Chatterbox to start from, and the LoRA put on it (the seed's table: rank 16-64, alpha 32-128)."""

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
    t3_model: str | None = field(
        default=None,
        metadata={"help": f"Which T3 of ResembleAI/chatterbox, upstream's names {sorted(T3_MODELS)} (default v2; v3 is "
                          "decoded as upstream main decodes it). The language packs are v3 finetunes already."},
    )
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    train_s3gen: bool = field(
        default=False,
        metadata={"help": "Also adapt S3Gen; preparation then also stores 24 kHz mels and CAMPPlus x-vectors."},
    )
    train_t3: bool = field(default=True, metadata={"help": "Adapt T3 (text -> speech tokens), the main job."})
    lora_rank: int = field(default=32, metadata={"help": "Rank of the LoRA matrices."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA scaling (the update is multiplied by alpha / rank)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] = field(
        default_factory=lambda: list(T3_LORA_TARGETS),
        metadata={"help": "T3 (Llama) Linear layers to adapt; add gate_proj up_proj down_proj for the MLP."},
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "T3 modules trained whole and saved with the adapter (e.g. speech_head, or text_emb after "
                          "adding an accent token)."},
    )
    s3gen_target_modules: list[str] = field(
        default_factory=lambda: list(S3GEN_LORA_TARGETS),
        metadata={"help": "S3Gen flow layers to adapt when train_s3gen is set (conformer and decoder attention)."},
    )

    def __post_init__(self):
        layout_name(self.model_variant, self.t3_model)  # raises with what to change
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ValueError(f"lora_rank={self.lora_rank}, lora_alpha={self.lora_alpha}: both must be >= 1.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout={self.lora_dropout}: use a value in [0, 1).")
        if not (self.train_t3 or self.train_s3gen):
            raise ValueError("train_t3 and train_s3gen are both false: set at least one.")
        if self.train_t3 and not self.target_modules:
            raise ValueError("target_modules is empty: list T3 layers to adapt, e.g. [q_proj, k_proj, v_proj, o_proj].")


@dataclass
class DataConfig:
    """Where the raw data comes from and how it becomes the prepared feature dataset."""

    input_path: str | None = field(
        default=None,
        metadata={"help": "Raw data: a folder (seed layout, OpenSLR, Common Voice) or a Hugging Face dataset repo id."},
    )
    extra_inputs: list[str] = field(default_factory=list, metadata={
        "help": "More folders in the seed's layout read beside input_path (segment_recordings.py's output)."})
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
class TrainingConfig:
    """The seed's `training:` section; turned into `transformers.TrainingArguments` by `training_arguments`."""

    batch_size: int = field(default=4, metadata={"help": "Clips per device per step."})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "Steps accumulated per optimizer update."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of the LoRA weights."})
    num_epochs: float = field(default=10.0, metadata={"help": "Passes over the training split (unless max_steps)."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer updates (-1: use num_epochs)."})
    warmup_steps: int = field(default=500, metadata={"help": "Linear warm-up updates."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    text_loss_weight: float = field(
        default=0.01, metadata={"help": "Weight of the text-token loss next to the speech-token loss (XTTS uses 0.01)."}
    )
    s3gen_loss_weight: float = field(default=1.0, metadata={"help": "Weight of S3Gen's flow-matching loss."})
    uncond_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of training rows shown as classifier-free guidance's unconditional branch (text "
                          "embeddings zeroed as inference zeroes them, no text loss), so the adapter learns both "
                          "branches CFG combines; 0 turns it off."},
    )
    group_by_length: bool = field(default=True, metadata={"help": "Batch clips of similar duration (less padding)."})
    streaming_train: bool = field(
        default=False,
        metadata={"help": "Read the prepared dataset as an IterableDataset (data that does not fit; resume replays)."},
    )
    eval_every: int | None = field(default=None, metadata={"help": "Evaluate every N updates (default: save_every)."})
    adapters: str = field(
        default="shared", metadata={"help": "'shared': one adapter on all data; 'per_accent': one adapter per accent."}
    )
    adapter_accents: list[str] | None = field(
        default=None, metadata={"help": "Accents to train per-accent adapters for (default: all in the dataset)."}
    )
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (LoRA weights stay fp32)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory in T3."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data loader worker processes."})
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, dropout and data order."})
    record_batch_ids: bool = field(
        default=False,
        metadata={"help": "Write each batch's clip ids to <checkpoint_dir>/batches-rank<N>.jsonl (audits sharding "
                          "and data order)."},
    )

    def __post_init__(self):
        if self.streaming_train and self.max_steps < 0:
            raise ValueError("streaming_train needs max_steps: an IterableDataset has no length to count epochs.")
        if self.adapters not in ("shared", "per_accent"):
            raise ValueError(f"adapters={self.adapters!r}: use 'shared' or 'per_accent'.")
        if self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("batch_size and gradient_accumulation_steps must be >= 1.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate}: must be > 0.")
        if not 0 <= self.uncond_fraction < 1:
            raise ValueError(f"uncond_fraction={self.uncond_fraction}: use a share in [0, 1).")


BEST_MODEL_METRICS = {"eval_speaker_sim": True, "eval_dnsmos": True, "eval_accent_prob": True,
                      "eval_wer": False, "eval_loss": False}
"""The metrics a checkpoint can be chosen by, and whether higher is better."""


@dataclass
class OutputConfig:
    """The seed's `output:` section: where checkpoints go, how often, and the Hub."""

    checkpoint_dir: str = field(default="runs/checkpoints", metadata={"help": "Checkpoints and final adapters."})
    save_every: int = field(default=1000, metadata={"help": "Save a checkpoint every N updates."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep the last N checkpoints."})
    resume: str | None = field(
        default=None, metadata={"help": "Resume from a checkpoint folder, or 'latest' (newest complete one)."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Push adapters to hub_model_id at saves and at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo for the adapters (USER/NAME)."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    metric_for_best_model: str | None = field(default=None, metadata={
        "help": "Keep the checkpoint whose evaluation scored best on this metric as the final adapter (the one "
                "pushed and merged): eval_speaker_sim, eval_dnsmos, eval_accent_prob (with "
                "logging.eval_accent_model), eval_wer (with logging.eval_asr_model) or eval_loss; the audio metrics "
                "score logging.eval_audio_samples sentences of speakers not in training. Default: the last "
                "checkpoint."})

    def __post_init__(self):
        if self.save_every < 1:
            raise ValueError(f"save_every={self.save_every}: must be >= 1.")
        if self.metric_for_best_model and not self.metric_for_best_model.startswith("eval_"):
            self.metric_for_best_model = f"eval_{self.metric_for_best_model}"
        if self.metric_for_best_model and self.metric_for_best_model not in BEST_MODEL_METRICS:
            raise ValueError(f"metric_for_best_model={self.metric_for_best_model!r}: use one of "
                             f"{sorted(BEST_MODEL_METRICS)}.")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub is set but hub_model_id is not: set hub_model_id: USER/NAME.")


@dataclass
class LoggingConfig:
    """The seed's `logging:` section."""

    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"], metadata={"help": "tensorboard, wandb, or none."}
    )
    wandb_project: str | None = field(default=None, metadata={"help": "Weights & Biases project (adds wandb)."})
    log_every: int = field(default=100, metadata={"help": "Log losses every N updates."})
    eval_audio_samples: int = field(
        default=2, metadata={"help": "Validation sentences synthesised and logged as audio at each evaluation."}
    )
    eval_audio_metrics: bool = field(
        default=True,
        metadata={"help": "Score those samples too: speaker similarity (resemblyzer) and DNSMOS, logged as eval/*."},
    )
    eval_asr_model: str | None = field(default=None, metadata={
        "help": "ASR checkpoint (Hub id or folder, e.g. openai/whisper-large-v3) that also scores the samples' "
                "WER at each evaluation (eval/wer); none: no WER."})
    eval_accent_model: str | None = field(default=None, metadata={
        "help": f"Accent classifier (Hub id or folder, e.g. {DEFAULT_ACCENT_MODEL}) that also scores the "
                "probability of each sample's own accent at each evaluation (eval/accent_prob); none: not scored."})

    def __post_init__(self):
        if self.wandb_project and "wandb" not in self.report_to:
            self.report_to = [r for r in self.report_to if r != "none"] + ["wandb"]


SPEAKER_MODES = ("one", "per-file", "diarize")
DEFAULT_ALIGNER = "jonatasgrosman/wav2vec2-large-xlsr-53-spanish"
DEFAULT_DIARIZATION = "pyannote/speaker-diarization-community-1"


@dataclass
class SegmentConfig:
    """What `training/segment_recordings.py` asks for (recipe section `segmentation`): long recordings (podcasts,
    audiobooks, interviews, a read script) -> clips in the seed's layout that `prepare_data.py` reads."""

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


RECIPE_SECTIONS = {
    "model": ModelConfig,
    "training": TrainingConfig,
    "data": DataConfig,
    "output": OutputConfig,
    "logging": LoggingConfig,
}


ALL_SECTIONS = {**RECIPE_SECTIONS, "segmentation": SegmentConfig}
"""Every section a recipe may hold; each script reads its own and skips the others."""


@dataclass
class Recipe:
    """A training recipe: one instance per section (`Recipe(*parse_recipe(RECIPE_SECTIONS))`)."""

    model: ModelConfig
    training: TrainingConfig
    data: DataConfig
    output: OutputConfig
    logging: LoggingConfig


class RecipeError(ValueError):
    """A recipe that does not fit the schema; the message names the file, section and key."""


def load_recipe_file(path: str | Path, sections: dict[str, type]) -> dict[str, Any]:
    """Reads a recipe and flattens its sections into `{field: value}`, checking every key against the schema."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"Recipe {path} does not exist.")
    content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(content, dict):
        raise RecipeError(f"Recipe {path} must be a mapping of sections ({', '.join(sections)}).")
    flat: dict[str, Any] = {}
    for section, values in content.items():
        if section not in sections:
            if section in ALL_SECTIONS:  # another script's section of the same recipe
                continue
            raise RecipeError(f"{path}: unknown section '{section}'; the sections are {sorted(ALL_SECTIONS)}.")
        known = {f.name for f in dataclasses.fields(sections[section])}
        hints = typing.get_type_hints(sections[section])
        for key, value in (values or {}).items():
            if key not in known:
                raise RecipeError(f"{path}: section '{section}' has no field '{key}'; its fields are {sorted(known)}.")
            # YAML reads `30` as an int; a float field gets a float, as it would from the command line.
            if isinstance(value, int) and not isinstance(value, bool) and float in typing.get_args(hints[key]) + (hints[key],):
                value = float(value)
            flat[key] = value
    return flat


def parse_recipe(
    sections: dict[str, type],
    argv: list[str] | None = None,
    aliases: dict[str, str] | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Returns one dataclass instance per section, in the order of `sections`.

    `aliases` maps a script's own flag names to fields (`{"output_dir": "prepared_dir"}`), so each script keeps
    the flags its users know while the recipe keeps one name per field.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    for alias, target in (aliases or {}).items():
        argv = [f"--{target}" if arg == f"--{alias}" else arg.replace(f"--{alias}=", f"--{target}=", 1) for arg in argv]

    from transformers import HfArgumentParser

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)

    parser = HfArgumentParser(list(sections.values()), description=description)
    parser.add_argument("--config", default=None, help="YAML recipe whose values become the defaults.")
    if known.config:
        defaults = load_recipe_file(known.config, sections)
        parser.set_defaults(**defaults)
    *instances, _ = parser.parse_args_into_dataclasses(args=rest + (["--config", known.config] if known.config else []))
    return tuple(instances)


def parse_command(commands: dict[str, dict[str, type]], argv: list[str] | None = None,
                  description: str | None = None) -> tuple[str, tuple[Any, ...]]:
    """For scripts with subcommands (`sync_checkpoints.py push|watch|pull`): the first argument names the command,
    the rest is parsed by `parse_recipe` with that command's sections. Returns (command, instances)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands:
        usage = (f"usage: {Path(sys.argv[0]).name} {{{' | '.join(commands)}}} [--help] ...\n\n{description or ''}\n"
                 "`COMMAND --help` lists the command's options.")
        if argv and argv[0] in ("-h", "--help"):
            print(usage)
            raise SystemExit(0)
        raise SystemExit(usage if not argv else f"{argv[0]!r} is no command.\n{usage}")
    return argv[0], parse_recipe(commands[argv[0]], argv[1:], description=description)


def layout_name(variant: str | None = None, t3_model: str | None = None) -> str | None:
    """The layout a recipe asks for: `model_variant` (a `LAYOUTS` name) or upstream's `t3_model` (v2 / v3)."""
    if t3_model is not None and t3_model not in T3_MODELS:
        raise ValueError(f"t3_model={t3_model!r}: use one of {sorted(T3_MODELS)} (upstream's names for the T3 files "
                         "of ResembleAI/chatterbox).")
    if variant is not None and variant not in LAYOUTS:
        raise ValueError(f"model_variant={variant!r}: use one of {sorted(LAYOUTS)} or leave it unset.")
    if variant and t3_model and variant != T3_MODELS[t3_model]:
        raise ValueError(f"model_variant={variant!r} and t3_model={t3_model!r} disagree: set one of them.")
    return variant or (T3_MODELS[t3_model] if t3_model else None)


DEFAULT_WAVLM_SV = "microsoft/wavlm-base-plus-sv"

METRICS = ("wer", "cer", "speaker_sim", "mos", "accent", "rtf")
PROTOCOLS = ("seed-tts-eval",)

ALIGNMENT_CHOICES = {"auto": None, "on": True, "off": False}
"""How scripts and the Space's ALIGNMENT variable say `alignment`: auto (as upstream runs them for the model's
generation: on for v2 multilingual, off for v3 and the packs, and off where an adapter changed the attention they
read, `decoding.default_alignment`), on, off."""


def parse_alignment(value: str | bool | None) -> bool | None:
    """`ALIGNMENT_CHOICES`' word (or a bool, or None) as `ChatterboxLatamTTS.alignment` takes it."""
    if value is None or isinstance(value, bool):
        return value
    key = value.strip().lower() or "auto"
    if key not in ALIGNMENT_CHOICES:
        raise ValueError(f"alignment={value!r}: use one of {sorted(ALIGNMENT_CHOICES)}.")
    return ALIGNMENT_CHOICES[key]


@dataclass(kw_only=True)
class SynthesisConfig:
    """How a model's T3 and S3Gen run: the settings generate.py and evaluate.py share (defaults are upstream's)."""

    device: str = field(default_factory=default_device, metadata={"help": "cuda or cpu (default: cuda when there "
                                                                           "is a GPU)."})
    mode: str = field(default="fp32", metadata={
        "help": "T3 precision: fp32 (exact: upstream's tokens), bf16, int8 / int8-wo / int4-wo (CPU), or auto (the "
                "fastest that agrees with fp32 on this model; see docs/speed.md). evaluate.py scores a "
                "faster setting beside fp32.",
        "choices": [*MODES, "auto"]})
    s3gen: str = field(default="standard", metadata={
        "help": "S3Gen's flow decoder: standard (the model's own, 10 steps with CFG) or meanflow (Resemble's "
                "distilled decoder from Chatterbox-Turbo: 2 steps, no CFG; a fine-tuned S3Gen is not used with it). "
                "evaluate.py scores it beside the standard one.",
        "choices": list(S3GEN_DECODERS)})
    meanflow_model: str | None = field(default=None, metadata={
        "help": f"Folder or Hub repo id holding s3gen_meanflow.safetensors (default: the model's folder when it holds "
                f"one, else {MEANFLOW_REPO})."})
    s3gen_mode: str = field(default="fp32", metadata={
        "help": "S3Gen flow precision (bf16: about 2x faster on CPUs with bf16 units; check with evaluate.py).",
        "choices": list(S3GEN_MODES)})
    cfm_steps: int | None = field(default=None, metadata={"help": "S3Gen flow steps (default: the decoder's own, "
                                                                  "10 standard, 2 meanflow; fewer is faster)."})
    s3gen_prompt_seconds: float | None = field(default=None, metadata={
        "help": "Seconds of the reference S3Gen continues from (default: all of it, up to 10; less is faster)."})
    alignment: str = field(default="auto", metadata={
        "help": "Upstream's alignment heuristics: auto (on for v2 multilingual, off for v3 and the packs, as "
                "upstream; off where the adapter changed the attention they read, as upstream main decodes every "
                "model), on or off. evaluate.py: when the adapter changed that attention, the other setting is "
                "scored too.",
        "choices": sorted(ALIGNMENT_CHOICES)})
    t3_model: str | None = field(default=None, metadata={
        "help": "With ResembleAI/chatterbox (or a folder of it) as the model or base: which of its T3 files.",
        "choices": sorted(T3_MODELS)})

    def __post_init__(self):
        if self.mode not in (*MODES, "auto"):
            raise ValueError(f"mode={self.mode!r}: use one of {[*MODES, 'auto']}.")
        if self.s3gen_mode not in S3GEN_MODES:
            raise ValueError(f"s3gen_mode={self.s3gen_mode!r}: use one of {S3GEN_MODES}.")
        if self.s3gen not in S3GEN_DECODERS:
            raise ValueError(f"s3gen={self.s3gen!r}: use one of {S3GEN_DECODERS}.")
        parse_alignment(self.alignment)
        layout_name(t3_model=self.t3_model)

    @property
    def alignment_setting(self) -> bool | None:
        """`alignment` as `ChatterboxLatamTTS.alignment` takes it."""
        return parse_alignment(self.alignment)


@dataclass(kw_only=True)
class EvalConfig(SynthesisConfig):
    """What `training/evaluate.py` asks for: the systems, the test data, the metrics and their models."""

    checkpoint: str = field(metadata={"help": "Adapter folder, merged model folder or Hub repo id."})
    test_data: str = field(metadata={"help": "Prepared dataset folder (its test split) or seed-layout folder."})
    output_dir: str = field(metadata={"help": "Where results.json, report.md, plots/ and audio/ go."})
    metrics: list[str] = field(default_factory=lambda: list(METRICS), metadata={
        "help": f"What to measure: any of {list(METRICS)}, or all.", "aliases": ["--metric"],
        "choices": [*METRICS, "all"]})
    compare_base: bool = field(default=False, metadata={"help": "Also evaluate the base model."})
    base_model: str | None = field(default=None, metadata={"help": "Base for an adapter (default: its "
                                                                    "adapter.json)."})
    compare: list[str] = field(default_factory=list, metadata={
        "help": "More models scored side by side: Hub repo ids or folders, e.g. "
                "ResembleAI/Chatterbox-Multilingual-es-mx-latam ResembleAI/chatterbox:v3 (the v3 T3)."})
    asr_model: str = field(default=DEFAULT_ASR, metadata={"help": "ASR checkpoint id or local folder for WER/CER."})
    wavlm_model: str | None = field(default=DEFAULT_WAVLM_SV, metadata={
        "help": "WavLM speaker-verification checkpoint for a second similarity ('' to skip)."})
    protocol: str | None = field(default=None, metadata={
        "help": "A shared protocol, so figures compare across systems and machines: seed-tts-eval speaks the fixed "
                "Spanish list chatterbox_latam/evaluation/lists/seed_tts_eval_es.tsv with held-out speakers of "
                "--test_data and adds its WER (Whisper-large-v3, its normalisation, averaged per sentence) and "
                "similarity (WavLM-Large + ECAPA-TDNN, --sv_checkpoint).", "choices": list(PROTOCOLS)})
    sv_checkpoint: str | None = field(default=None, metadata={
        "help": "seed-tts-eval's speaker-verification checkpoint, a local wavlm_large_finetune.pth (linked from "
                "seed-tts-eval's README)."})
    accent_model: str = field(default=DEFAULT_ACCENT_MODEL, metadata={
        "help": "Accent classifier for the accent metric: a speechbrain model with a custom_interface.py "
                "(CommonAccent's layout), Hub id or local folder."})
    utmos: bool = field(default=True, metadata={"help": "Score UTMOS too (--no_utmos skips it)."})
    utmos_checkpoint: str | None = field(default=None, metadata={
        "help": "Local utmos_state_dict.pt (default: from the Hub repo Blinorot/UTMOS-PyTorch)."})
    split: str | None = field(default=None, metadata={
        "help": "The split of a prepared --test_data to score (default: test; a dataset without one is refused). "
                "Another split is scored knowingly, and the report's first line says so: validation sentences "
                "are held out from training but chose the checkpoint, training sentences were learnt."})
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate at most this many sentences."})
    seed: int = field(default=0, metadata={"help": "Sampling seed for synthesis."})
    goals: bool | None = field(default=None, metadata={
        "help": "Measure the seed's goals: expressivity control kept (pitch, energy and rate at exaggeration 0.25, "
                "0.5, 0.9) and cloning from 3, 6 and 10 s of reference, fine-tune and base (default: with all "
                "metrics, the full evaluation).", "nargs": "?", "const": True})
    goals_sentences: int = field(default=6, metadata={"help": "Test sentences the goals are measured on."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "The most speech tokens a sentence may take, every system alike: synthesis's budget from the text "
                "(up to 1000), capped at this (default: no cap). A converged T3 stops well before; a cap bounds "
                "the time of an early checkpoint that does not stop yet; the report states it."})
    cfg_weight: float = field(default=0.5, metadata={
        "help": "The fine-tune's classifier-free guidance weight (upstream's 0.5 by default). 0 decodes one "
                "backbone row instead of two (exact, about twice as fast on a CPU); at another value than 0.5 the "
                "fine-tune is also scored at 0.5 beside it."})

    def __post_init__(self):
        super().__post_init__()
        unknown = sorted(set(self.metrics) - {*METRICS, "all"})
        if unknown:
            raise ValueError(f"metrics {unknown}: use any of {list(METRICS)}, or all.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens {self.max_new_tokens}: give a positive number of speech tokens "
                             "(25 per second), or leave it out for the budget from the text.")
        if self.protocol and self.goals:
            raise ValueError("--goals measures cloning against each sentence's recording, and a protocol's list has "
                             "none: run the goals in an evaluation without --protocol.")
        if self.goals is None:  # the full evaluation measures them (a protocol's does not: no recordings)
            self.goals = not self.protocol and ("all" in self.metrics or set(self.metrics) >= set(METRICS))
        if "all" in self.metrics:
            self.metrics = list(METRICS)
        self.wavlm_model = self.wavlm_model or None


@dataclass(kw_only=True)
class GenerateConfig(SynthesisConfig):
    """What `training/generate.py` asks for: one WAV per line of a text file, in a cloned voice."""

    model: str = field(metadata={"help": "Merged model or adapter folder, or Hub repo id."})
    texts: str = field(metadata={"help": "UTF-8 text file, one utterance per line."})
    output_dir: str = field(metadata={"help": "Where the WAVs and manifest.csv go."})
    reference: str | None = field(default=None, metadata={"help": "WAV of the voice to clone (default: the "
                                                                   "model's voice)."})
    accent: str | None = field(default=None, metadata={"help": "Accent adapter / normalisation.",
                                                       "choices": list(ACCENTS)})
    exaggeration: float = field(default=0.5, metadata={"help": "Expressiveness (0-1+)."})
    cfg_weight: float = field(default=0.5, metadata={"help": "Classifier-free guidance weight."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature."})
    seed: int | None = field(default=None, metadata={"help": "Seed, for repeatable outputs."})
    lines_together: int = field(default=1, metadata={
        "help": "Lines decoded at once (one T3 pass per step for all their sentences): more is faster in total, "
                "without upstream's alignment heuristics (they follow one utterance)."})


MERGE_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class MergeConfig:
    """What `training/merge.py` asks for."""

    adapter: list[str] = field(metadata={
        "help": "Adapter folder (training's final/), or ACCENT=PATH pairs, one merged model each (repeatable).",
        "action": "extend"})
    output_dir: str = field(metadata={"help": "Folder of the merged model (per accent: its parent)."})
    base: str | None = field(default=None, metadata={"help": "Base model folder or Hub repo id (default: "
                                                             "adapter.json's)."})
    dtype: str = field(default="float32", metadata={"help": "Precision of the saved weights.",
                                                    "choices": list(MERGE_DTYPES)})
    default_voice: str | None = field(default=None, metadata={"help": "WAV that becomes the model's default voice."})
    upstream_layout: bool | None = field(default=None, metadata={
        "help": "Also write upstream's ve.pt / s3gen.pt / conds.pt (default: for full-size bases; false: never).",
        "nargs": "?", "const": True})
    gguf: str | None = field(default=None, metadata={
        "help": "Also write T3's backbone as a GGUF for llama.cpp (t3-TYPE.gguf): q4_0 (bare --gguf), q8_0, f16 or "
                "f32.", "nargs": "?", "const": "q4_0", "choices": list(GGUF_TYPES)})


@dataclass
class PushConfig:
    """What `training/push_to_hub.py` asks for."""

    repo_id: str = field(metadata={"help": "Hub repo to push to (USER/NAME or ORG/NAME)."})
    what: str = field(metadata={"help": "What --path holds.", "choices": ["adapter", "merged", "dataset"]})
    path: str = field(metadata={"help": "Adapter folder, merged model folder or prepared dataset folder."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    results: str | None = field(default=None, metadata={"help": "The evaluation's results.json, for the card's "
                                                                "model-index."})
    base_model_id: str | None = field(default=None, metadata={
        "help": "Hub id of the base model for the card (default: the one the adapter names)."})
    dataset_id: str | None = field(default=None, metadata={"help": "Hub id of the training dataset for the card."})
    license: str = field(default="mit", metadata={"help": "Licence id for the card (upstream Chatterbox is MIT)."})


@dataclass
class SyncConfig:
    """What `training/sync_checkpoints.py push|watch|pull` asks for."""

    repo_id: str = field(metadata={"help": "Hub model repo holding last-checkpoint/ (USER/NAME)."})
    checkpoint_dir: str = field(metadata={"help": "The training run's checkpoint folder."})
    every: float = field(default=600, metadata={"help": "watch: seconds between syncs."})
    public: bool = field(default=False, metadata={"help": "Create the repo public (default: private)."})


@dataclass
class ListeningTestConfig:
    """`training/mos_kit.py prepare`: a blinded listening test from an evaluation."""

    eval_dir: str = field(metadata={"help": "An output folder of training/evaluate.py."})
    output_dir: str = field(metadata={"help": "Where the listening test goes."})
    seed: int = field(default=0, metadata={"help": "Seed of the shuffle."})


@dataclass
class RatingsConfig:
    """`training/mos_kit.py score`: MOS per system with 95% confidence intervals."""

    key: str = field(metadata={"help": "key.csv written by prepare."})
    ratings: list[str] = field(metadata={"help": "ratings-*.csv files from the listeners."})
    output: str | None = field(default=None, metadata={"help": "Also write the result as JSON here."})
