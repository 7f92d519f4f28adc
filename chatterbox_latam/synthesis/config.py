"""What synthesis is asked: how a model's T3 and S3Gen run (`SynthesisConfig`, shared by the generate and evaluate
commands) and what the generate command writes. No torch import."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..constants import ACCENTS, GENERATIONS, MEANFLOW_REPO, MODES, S3GEN_DECODERS, S3GEN_MODES, T3_MODELS, Generation
from ..models.config import layout_name
from ..utils import default_device


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
class GenerationSettings:
    """How one call samples speech: what `generate`, `generate_batch`, `stream`, `tokens`, `generate_speech`, batch
    generation, serving and evaluation take, as one object (`settings=`) or as keyword overrides of it
    (`model.generate(text, cfg_weight=0.3)`). Defaults are upstream's multilingual `generate`'s; the two that
    depend on the model's generation (`repetition_penalty`, and `alignment` through the model) stay None until
    `for_generation` fills them from `constants.GENERATIONS`. Treat an instance as a value: `replace` makes a
    changed copy."""

    exaggeration: float = field(default=0.5, metadata={
        "help": "Expressiveness: 0.5 is the reference's own; higher is livelier and faster (0-1+)."})
    cfg_weight: float = field(default=0.5, metadata={
        "help": "Classifier-free guidance weight: how strongly the text steers T3 (0 decodes one backbone row "
                "instead of two: exact, about twice as fast on a CPU)."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature."})
    repetition_penalty: float | None = field(default=None, metadata={
        "help": "Penalty on repeated speech tokens (default: the model's generation's: v2 2.0, v3 and the "
                "language packs 1.2)."})
    min_p: float = field(default=0.05, metadata={"help": "Min-p sampling threshold (1: only the likeliest token)."})
    top_p: float = field(default=1.0, metadata={"help": "Top-p (nucleus) sampling threshold."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "The most speech tokens a sentence may take (25 per second): the budget from the text (up to "
                "1000), capped at this (default: no cap). A converged T3 stops well before; a cap bounds the time "
                "of an early checkpoint that does not stop yet."})
    alignment: str | None = field(default=None, metadata={
        "help": "Upstream's alignment heuristics for this call: on, off, or auto/none for the model's setting (on "
                "for v2, off for v3 and the packs, and off where the adapter changed the attention they read)."})
    accent: str | None = field(default=None, metadata={
        "help": "Accent: picks the accent's adapter of a per-accent model and the text normalisation.",
        "choices": list(ACCENTS)})
    seed: int | None = field(default=None, metadata={"help": "Seed of T3's sampling and S3Gen's noise, for "
                                                             "repeatable audio (default: not seeded)."})
    min_new_tokens: int = field(default=0, metadata={
        "help": "Steps during which the stop token cannot be drawn (0, as upstream): for measurements that need a "
                "given number of steps (the precision guard); during them only speech tokens are drawn."})

    def __post_init__(self):
        self.alignment = parse_alignment(self.alignment)
        if self.accent is not None and self.accent not in ACCENTS:
            raise ValueError(f"accent={self.accent!r}: use one of {ACCENTS}.")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens {self.max_new_tokens}: give a positive number of speech tokens "
                             "(25 per second), or leave it out for the budget from the text.")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: must be > 0.")
        if not 0 <= self.min_p <= 1 or not 0 < self.top_p <= 1:  # min_p 1: only the likeliest token (greedy)
            raise ValueError(f"min_p={self.min_p}, top_p={self.top_p}: use 0 <= min_p <= 1 and 0 < top_p <= 1.")

    def replace(self, **changes: Any) -> "GenerationSettings":
        """A copy with `changes`; an unknown name is an error that lists the settings."""
        names = {f.name for f in dataclasses.fields(GenerationSettings)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown generation settings {unknown}; the settings are {sorted(names)}.")
        return dataclasses.replace(GenerationSettings.of(self), **changes)

    @classmethod
    def of(cls, config: Any) -> "GenerationSettings":
        """The settings part of a config that holds them (`GenerateConfig`, `EvalConfig`), or a copy of settings."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})

    def for_generation(self, generation: Generation | str) -> "GenerationSettings":
        """The settings with what depends on the model's generation filled in (`constants.GENERATIONS`)."""
        generation = GENERATIONS[generation] if isinstance(generation, str) else generation
        if self.repetition_penalty is not None:
            return self
        return self.replace(repetition_penalty=generation.repetition_penalty)


@dataclass(kw_only=True)
class SynthesisConfig:
    """How a model's T3 and S3Gen run: the settings the generate and evaluate commands share (defaults are upstream's)."""

    device: str = field(default_factory=default_device, metadata={"help": "cuda or cpu (default: cuda when there "
                                                                           "is a GPU)."})
    mode: str = field(default="fp32", metadata={
        "help": "T3 precision: fp32 (exact: upstream's tokens), bf16, int8 / int8-wo / int4-wo (CPU), or auto (the "
                "fastest that agrees with fp32 on this model; see docs/speed.md). The evaluate command scores a "
                "faster setting beside fp32.",
        "choices": [*MODES, "auto"]})
    s3gen: str = field(default="standard", metadata={
        "help": "S3Gen's flow decoder: standard (the model's own, 10 steps with CFG) or meanflow (Resemble's "
                "distilled decoder from Chatterbox-Turbo: 2 steps, no CFG; a fine-tuned S3Gen is not used with it). "
                "The evaluate command scores it beside the standard one.",
        "choices": list(S3GEN_DECODERS)})
    meanflow_model: str | None = field(default=None, metadata={
        "help": f"Folder or Hub repo id holding s3gen_meanflow.safetensors (default: the model's folder when it holds "
                f"one, else {MEANFLOW_REPO})."})
    s3gen_mode: str = field(default="fp32", metadata={
        "help": "S3Gen flow precision (bf16: about 2x faster on CPUs with bf16 units; check with the evaluate command).",
        "choices": list(S3GEN_MODES)})
    cfm_steps: int | None = field(default=None, metadata={"help": "S3Gen flow steps (default: the decoder's own, "
                                                                  "10 standard, 2 meanflow; fewer is faster)."})
    s3gen_prompt_seconds: float | None = field(default=None, metadata={
        "help": "Seconds of the reference S3Gen continues from (default: all of it, up to 10; less is faster)."})
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
        layout_name(t3_model=self.t3_model)


@dataclass(kw_only=True)
class GenerateConfig(SynthesisConfig, GenerationSettings):
    """What the generate command asks for: one WAV per line of a text file, in a cloned voice."""

    model: str = field(metadata={"help": "Merged model or adapter folder, or Hub repo id."})
    texts: str = field(metadata={"help": "UTF-8 text file, one utterance per line."})
    output_dir: str = field(metadata={"help": "Where the WAVs and manifest.csv go."})
    reference: str | None = field(default=None, metadata={"help": "WAV of the voice to clone (default: the "
                                                                   "model's voice)."})
    lines_together: int = field(default=1, metadata={
        "help": "Lines decoded at once (one T3 pass per step for all their sentences): more is faster in total, "
                "without upstream's alignment heuristics (they follow one utterance)."})

    def __post_init__(self):
        SynthesisConfig.__post_init__(self)
        GenerationSettings.__post_init__(self)
