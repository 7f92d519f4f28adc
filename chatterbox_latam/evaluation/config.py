"""What evaluation is asked: the systems, the test data, the metrics and their models (the evaluate command), and
the listening test kit. No torch import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..constants import DEFAULT_ACCENT_MODEL, DEFAULT_ASR, DEFAULT_WAVLM_SV
from ..synthesis.config import GenerationSettings, SynthesisConfig


METRICS = ("wer", "cer", "speaker_sim", "mos", "accent", "rtf")
PROTOCOLS = ("seed-tts-eval",)


@dataclass(kw_only=True)
class EvalConfig(SynthesisConfig, GenerationSettings):
    """What the evaluate command asks for: the systems, the test data, the metrics and their models, and the
    generation settings every system speaks with (seeded; `max_new_tokens` caps every system's sentences alike, and
    the report states it). At a `cfg_weight` other than upstream's 0.5, the fine-tune is also scored at 0.5."""

    aliases: ClassVar[dict[str, str]] = {"goals": "targets", "goals_sentences": "targets_sentences", "metric": "metrics"}
    """Older names of the targets' flags."""

    checkpoint: str = field(metadata={"help": "Adapter folder, merged model folder or Hub repo id."})
    test_data: str = field(metadata={"help": "Prepared dataset folder (its test split) or a folder in the folder "
                                             "layout (audio/<speaker>/*.wav with metadata.csv)."})
    output_dir: str = field(metadata={"help": "Where results.json, report.md, plots/ and audio/ go."})
    metrics: list[str] = field(default_factory=lambda: list(METRICS), metadata={
        "help": f"What to measure: any of {list(METRICS)}, or all.",
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
    seed: int | None = field(default=0, metadata={"help": "Seed of every system's synthesis (evaluations repeat)."})
    targets: bool | None = field(default=None, metadata={
        "help": "Measure the project's targets beyond the metrics: expressivity control kept (pitch, energy and rate "
                "at exaggeration 0.25, 0.5, 0.9) and cloning from 3, 6 and 10 s of reference, fine-tune and base "
                "(default: with all metrics, the full evaluation).", "nargs": "?", "const": True})
    targets_sentences: int = field(default=6, metadata={"help": "Test sentences the targets are measured on."})

    def __post_init__(self):
        SynthesisConfig.__post_init__(self)
        GenerationSettings.__post_init__(self)
        unknown = sorted(set(self.metrics) - {*METRICS, "all"})
        if unknown:
            raise ValueError(f"metrics {unknown}: use any of {list(METRICS)}, or all.")
        if self.protocol and self.targets:
            raise ValueError("--targets measures cloning against each sentence's recording, and a protocol's list has "
                             "none: run the targets in an evaluation without --protocol.")
        if self.targets is None:  # the full evaluation measures them (a protocol's does not: no recordings)
            self.targets = not self.protocol and ("all" in self.metrics or set(self.metrics) >= set(METRICS))
        if "all" in self.metrics:
            self.metrics = list(METRICS)
        self.wavlm_model = self.wavlm_model or None


@dataclass
class ListeningTestConfig:
    """`chatterbox-latam mos-kit prepare`: a blinded listening test from an evaluation."""

    eval_dir: str = field(metadata={"help": "An output folder of `chatterbox-latam evaluate`."})
    output_dir: str = field(metadata={"help": "Where the listening test goes."})
    seed: int = field(default=0, metadata={"help": "Seed of the shuffle."})


@dataclass
class RatingsConfig:
    """`chatterbox-latam mos-kit score`: MOS per system with 95% confidence intervals."""

    key: str = field(metadata={"help": "key.csv written by prepare."})
    ratings: list[str] = field(metadata={"help": "ratings-*.csv files from the listeners."})
    output: str | None = field(default=None, metadata={"help": "Also write the result as JSON here."})
