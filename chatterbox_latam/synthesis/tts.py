"""Synthesis: `ChatterboxLatamTTS` (loading, voices, accents, long text, streaming) over the upstream modules.

T3 decodes through `synthesis.decoding` (upstream's sampling without its per-step overhead; fp32 gives
upstream's tokens, bf16 / int8 are faster), then S3Gen turns the tokens into 24 kHz audio and Resemble's Perth
watermark is applied. `generate_speech` is the one-call function.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constants import (
    MEANFLOW_STEPS,
    S3GEN_DECODERS,
    S3GEN_MODES,
    STREAM_CONTEXT_SECONDS,
    TOKENS_PER_SECOND,
)
from ..data.text import split_sentences
from ..utils import default_device, write_wav
from . import decoding
from .config import GenerationSettings
from .vocoder import apply_watermark, cut_prompt, flow_for_mode, tokens_to_wav
from .voices import upstream_prompt_seconds, voice_conditionals

def default_max_new_tokens(model_text: str) -> int:
    """A token budget for one sentence, from the text T3 reads (spelled out: "$2.345.678,90" is ~80 characters
    once normalised): generous for slow speech (8 characters/s at 25 tokens/s, plus 2 s), capped at upstream's
    1000. A trained T3 stops by itself well before; an untrained one would run to the cap."""
    return max(50, min(1000, int(25 * (len(model_text) / 8 + 2))))


# The sentence the `auto` precision guard decodes: Spanish as users write it, numbers and an abbreviation
# included, long enough for 64+ steps at any speaking rate.
GUARD_TEXT = ("Buenos días, le habla la Dra. Rojas: su cita quedó para el 15/03 a las 10:30, y el saldo pendiente "
              "es de $1.250,50. ¿Le parece bien?")
GUARD_STEPS = 64
GUARD_VOICE = Path(__file__).resolve().parent / "guard_voice.flac"
"""The voice the guard decodes in when the model has no default voice: 7.7 s of Spanish (three sentences: "Hola,
buenos días. Hoy revisamos juntos la agenda de la semana. Si tiene preguntas, con gusto le ayudo."), spoken by
espeak-ng 1.51's Latin-American voice (`espeak-ng -v es-419 -s 160 -w raw.wav "..."`), cleaned as training clips are
(`data.audio.clean_audio` with `CleaningConfig()`'s defaults: 24 kHz mono, silence trimmed, -23 LUFS) and stored as
16-bit FLAC (`data.audio.encode_flac`)."""


class ChatterboxLatamTTS:
    """Chatterbox fine-tuned for Latin-American Spanish: a merged model, or a base with one or several adapters.

        from chatterbox_latam import ChatterboxLatamTTS
        model = ChatterboxLatamTTS.from_pretrained("USER/chatterbox-es-latam", device="cuda")
        wav = model.generate("¿Qué onda? Nos vemos el 5 de mayo.", audio_prompt_path="voz.wav")
        torchaudio.save("salida.wav", wav, model.sr)

    `generate` mirrors upstream `ChatterboxMultilingualTTS.generate` (a (1, samples) tensor at `sr`, watermarked)
    with the language fixed to Spanish and an `accent` choice: with per-accent adapters loaded together it picks
    the adapter; it also picks the number-to-words and currency conventions of the text normalisation. Voice
    conditioning is upstream's `prepare_conditionals` (VoiceEncoder embedding, 6 s of prompt tokens, S3Gen
    reference), so a voice is cloned exactly as upstream clones it; a model trained on shorter prompts gets its
    prompt length (`t3_prompt_seconds`).
    """

    def __init__(self, tts, language: str = "es", accent: str | None = None, adapters: list[str] | None = None,
                 mode: str = "fp32", generation: str = "v2", normalize_text: bool = True,
                 reference_cleaning: dict[str, Any] | None = None, adapted_attention: bool | None = None,
                 prompt_seconds: float | None = None):
        from ..constants import GENERATIONS

        self.tts = tts
        self.language = language
        self.accent = accent
        self.adapters = list(adapters or [])
        self.sr = tts.sr
        self.generation = GENERATIONS[generation]
        """How upstream decodes this T3 (v2: 0.1.7's `generate`; v3 and the language packs: upstream main's)."""
        self.alignment: bool | None = None
        """Upstream's alignment heuristics for every call that does not say (None: `decoding.default_alignment`, as
        upstream runs them for this generation, and off where the adapter changed the attention they read)."""
        self.normalize_text = normalize_text
        """Spell out numbers, dates, currency... before T3 reads the text (as the training data was prepared)."""
        self.reference_cleaning = reference_cleaning
        """The cleaning the training clips went through (trim, loudness), applied to every reference before the
        voice is taken from it; None (a base model) leaves references as upstream takes them."""
        self.t3_prompt_seconds = upstream_prompt_seconds(tts) if prompt_seconds is None else float(prompt_seconds)
        """Seconds of a reference whose speech tokens, tokenised alone, make T3's prompt: the training prompts'
        length (`max_prompt_seconds` in the adapter's metadata), upstream's 6 s by default. Below 6, upstream's
        `prepare_conditionals` takes it (`reference_conditionals`)."""
        self.adapted_attention = adapted_attention
        """For a merged model: whether its T3 attention was adapted (config.json says; `alignment_matters`)."""
        self.s3gen_was_adapted = False
        """For a merged model: whether its S3Gen was fine-tuned (config.json says; `s3gen_adapted`)."""
        self.mode_guard: dict[str, Any] = {}
        """What the `auto` precision guard decoded (empty unless mode='auto'): the text T3 read (`text`), the text
        token ids it was fed (`text_tokens`, with start/stop), the speech tokens fp32 decoded (`speech_tokens`), the
        `steps`, the `voice` ('default voice' or `GUARD_VOICE`'s file name), the `repetition_penalty` and whether
        upstream's alignment heuristics ran (`alignment`)."""
        self.meanflow_source: str | None = None
        """Where `set_s3gen(decoder="meanflow")` loads the meanflow S3Gen from when not told: a folder or repo id
        (`from_pretrained` sets the model's own folder when it holds one; None: `constants.MEANFLOW_REPO`)."""
        self._voices: dict[tuple, Any] = {}
        self._fast: dict[tuple, Any] = {}
        self._flows: dict[tuple, Any] = {}
        self._decoders: dict[str | None, Any] = {}
        self.set_s3gen()
        self.token_cap: int | None = None
        """A cap on each sentence's text budget (`token_budget`); None: no cap. A call's own `max_new_tokens` is
        taken as given. Evaluation sets it (`--max_new_tokens`) to bound the time of a checkpoint that does not
        stop yet."""
        self.batch_size = 1
        """Sentences `generate` decodes together (one T3 forward pass per step for all of them): more is faster in
        total, but goes without upstream's alignment heuristics, which follow one utterance (`decoding`)."""
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        """T3's precision for synthesis: 'fp32' (exact: upstream's tokens), 'bf16', 'int8' (CPU; dynamic
        quantisation), 'int8-wo' / 'int4-wo' (CPU; int8 / 4-bit weights, bf16 activations), 'llamacpp-q4_0' /
        'llamacpp-q8_0' (CPU; the backbone on llama.cpp, without the alignment heuristics), or 'auto': the fastest
        mode whose teacher-forced agreement with fp32 holds up on this model, measured on this machine once and
        remembered (`precision.choose_mode`; `mode_reports` keeps the measurements). See `synthesis.precision`.
        The llama.cpp modes need the cpu-fast extra (`pip install chatterbox-es-latam[cpu-fast]`)."""
        from ..constants import CPU_ONLY, ENGINE_MODES, MODES

        self.mode_reports = []
        if mode == "auto":
            mode, self.mode_reports, prepared = self._choose_mode()
            if not self.adapters:  # kept: the guard already built it (per-accent copies are built per adapter)
                self._fast[(mode, None)] = prepared
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: use one of {MODES}.")
        if mode in CPU_ONLY and torch.device(self.device).type != "cpu":
            raise ValueError(f"mode={mode!r} runs on the CPU; on GPU use 'bf16'.")
        if mode in ENGINE_MODES:
            from .cpu_fast import missing_extra
            from .cpu_fast.engine import available

            if not available():
                raise missing_extra(f"mode={mode!r}")
        self.mode = mode

    def _choose_mode(self):
        """The guard's measurement, decoded as this model's synthesis decodes by default: a real Spanish sentence
        (`GUARD_TEXT`) normalised and tokenised as synthesis does, in a real voice (the model's default voice, else
        `GUARD_VOICE` taken as any reference is), with the generation's repetition penalty and upstream's alignment
        heuristics as a call without `alignment` runs them (`_alignment`), for `GUARD_STEPS` steps. `mode_guard`
        records what it decoded."""
        from .precision import choose_mode

        t3 = self.tts.t3
        voice = "default voice" if self.tts.conds is not None else GUARD_VOICE.name
        cond = self.voice(None if self.tts.conds is not None else GUARD_VOICE).t3
        text = self._text_tokens(GUARD_TEXT, self.accent, t3)
        settings, alignment = self.settings_for(), self._alignment(None)
        mode, reports, prepared = choose_mode(t3, cond, text, tokens=GUARD_STEPS, cache=True, settings=settings,
                                              alignment=alignment)
        self.mode_guard = {"text": self.model_text(GUARD_TEXT, self.accent), "text_tokens": text[0].tolist(),
                           "speech_tokens": reports[0].tokens, "steps": GUARD_STEPS, "voice": voice,
                           "repetition_penalty": settings.repetition_penalty,
                           "alignment": alignment and decoding.runs_alignment(t3)}
        return mode, reports, prepared

    def _t3(self, adapter: str | None):
        from .precision import t3_for_mode

        key = (self.mode, adapter)
        if self.mode == "fp32":
            return self.tts.t3
        if key not in self._fast:
            self._fast[key] = t3_for_mode(self.tts.t3, self.mode)
        return self._fast[key]

    @property
    def s3gen_mode(self) -> str:
        """S3Gen flow precision, `S3GEN_MODES`: 'fp32' (upstream) or 'bf16' (`flow_for_mode`)."""
        return self._s3gen_mode

    @s3gen_mode.setter
    def s3gen_mode(self, mode: str) -> None:
        if mode not in S3GEN_MODES:
            raise ValueError(f"s3gen_mode={mode!r}: use one of {S3GEN_MODES}.")
        self._s3gen_mode = mode

    def set_s3gen(self, mode: str = "fp32", cfm_steps: int | None = None, prompt_seconds: float | None = None,
                  decoder: str = "standard", meanflow_model: str | os.PathLike | None = None) -> None:
        """S3Gen's settings, all upstream's without arguments:
        - `mode`: flow precision (`S3GEN_MODES`; 'bf16' runs the flow on a bf16 copy, `flow_for_mode`);
        - `cfm_steps`: the flow-matching decoder's steps (None: the decoder's own, 10 standard, 2 meanflow);
        - `prompt_seconds`: seconds of the reference the flow continues from (None: all of it, up to upstream's
          10 s). The flow runs over the prompt as well as the new speech, so its time grows with the prompt's
          length (see the benchmark); the voice embedding still comes from the whole reference;
        - `decoder`: `S3GEN_DECODERS`: 'standard' (this model's S3Gen) or 'meanflow', Resemble's distilled decoder
          from Chatterbox-Turbo (2 steps, no CFG batch: about a tenth of the flow's work), loaded from
          `meanflow_model` (a folder holding `s3gen_meanflow.safetensors` or a repo id; default
          `meanflow_source`). It reads the same speech tokens, so any multilingual T3 feeds it; but it is
          Resemble's as published: a fine-tuned (LoRA or merged) S3Gen is not used with it (`s3gen_changes` says
          so), and its quality is for `evaluate.py --s3gen meanflow` to show on real weights."""
        if decoder not in S3GEN_DECODERS:
            raise ValueError(f"s3gen={decoder!r}: use one of {S3GEN_DECODERS}.")
        if mode not in S3GEN_MODES:
            raise ValueError(f"s3gen_mode={mode!r}: use one of {S3GEN_MODES}.")
        if decoder == "meanflow":
            source = str(meanflow_model or self.meanflow_source or "") or None
            if source not in self._decoders:
                from ..models.loading import load_meanflow_s3gen

                self._decoders[source] = load_meanflow_s3gen(source, self.device)
            self._meanflow = self._decoders[source]
        self.s3gen_decoder = decoder
        self.s3gen_mode, self.cfm_steps, self.s3gen_prompt_seconds = mode, cfm_steps, prompt_seconds

    @property
    def s3gen(self):
        """The S3Gen that turns speech tokens into audio at the current settings (this model's, or the meanflow
        decoder)."""
        return self._meanflow if self.s3gen_decoder == "meanflow" else self.tts.s3gen

    @property
    def s3gen_changes(self) -> str:
        """How S3Gen's settings differ from upstream's, in words ('' when they do not)."""
        changes = []
        if self.s3gen_decoder == "meanflow":
            changes.append("meanflow S3Gen decoder" + (" (the fine-tuned S3Gen is not used with it)"
                                                       if self.s3gen_adapted() else ""))
        if self.s3gen_mode != "fp32":
            changes.append(f"S3Gen {self.s3gen_mode}")
        own_steps = MEANFLOW_STEPS if self.s3gen_decoder == "meanflow" else 10
        if self.cfm_steps is not None and self.cfm_steps != own_steps:
            changes.append(f"{self.cfm_steps} flow steps")
        if self.s3gen_prompt_seconds:
            changes.append(f"{self.s3gen_prompt_seconds:g} s prompt")
        return ", ".join(changes)

    def s3gen_adapted(self) -> bool:
        """Whether this model's S3Gen was fine-tuned: a LoRA adapter on it, or a merged model whose config says so."""
        return self.s3gen_was_adapted or hasattr(self.tts.s3gen.flow, "peft_config")

    def _flow(self, adapter: str | None):
        s3gen = self.s3gen
        if self.s3gen_mode == "fp32":
            return s3gen
        key = (self.s3gen_mode, adapter if s3gen is self.tts.s3gen else id(s3gen))
        if key not in self._flows:
            self._flows[key] = flow_for_mode(s3gen, self.s3gen_mode)
        return self._flows[key]

    @property
    def device(self) -> str:
        return str(self.tts.device)

    @property
    def accents(self) -> list[str]:
        """Accents with their own adapter (empty for a merged model or one shared adapter)."""
        from ..constants import ACCENTS

        return [name for name in self.adapters if name in ACCENTS]

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str = "cpu", base_model: str | None = None,
                        revision: str | None = None, mode: str = "fp32", t3_model: str | None = None,
                        s3gen: str = "standard",
                        meanflow_model: str | os.PathLike | None = None) -> "ChatterboxLatamTTS":
        """Loads, from a local folder or a Hub repo id:
        - a merged model (`chatterbox-latam merge`'s output) or any Chatterbox checkpoint: `ResembleAI/chatterbox`
          (`t3_model="v3"` for its v3 T3), the language packs (`ResembleAI/Chatterbox-Multilingual-es-mx-latam`,
          `...-es-es`), or a folder in any of their layouts;
        - an adapter folder (`t3/`, `s3gen/`, `adapter.json`): its base comes from adapter.json or `base_model`;
        - a folder of per-accent adapters (`mx/`, `ar/`, ... each an adapter folder, or holding one in `final/`):
          all load onto one base, and `generate(..., accent=...)` picks one per call.
        Decoding follows the base's generation (`generation`): v2 as chatterbox-tts 0.1.7, v3 and the packs as
        upstream main. `s3gen="meanflow"` decodes speech with Resemble's meanflow S3Gen (`set_s3gen`), from
        `meanflow_model`, else the model's own folder when it holds one, else `constants.MEANFLOW_REPO`.

        Args:
            name_or_path: A folder or Hub repo id (one of the above).
            device: "cuda" or "cpu".
            base_model: The base of an adapter without adapter.json (or to load it on another copy of its base).
            revision: Hub revision (branch, tag or commit) of `name_or_path`.
            mode: T3's precision (`set_mode`): fp32, bf16, int8, int8-wo, int4-wo, the llama.cpp modes, or auto.
            t3_model: Which T3 of `ResembleAI/chatterbox` (v2 or v3).
            s3gen: S3Gen's decoder: standard or meanflow.
            meanflow_model: Where the meanflow decoder comes from (a folder or repo id).

        Returns:
            The model, ready to `generate`.
        """
        from .loading import load_tts

        model = load_tts(cls, name_or_path, device, base_model, revision, mode, t3_model)
        model.set_s3gen(decoder=s3gen, meanflow_model=meanflow_model)
        return model

    def found_in(self, directory: Path) -> "ChatterboxLatamTTS":
        """Notes a meanflow decoder shipped in the checkpoint's folder as this model's `meanflow_source`."""
        from ..constants import MEANFLOW_FILE

        if (Path(directory) / MEANFLOW_FILE).exists():
            self.meanflow_source = str(directory)
        return self

    # -- voices ----------------------------------------------------------------------------------------------------
    def voice(self, audio_prompt: str | os.PathLike | tuple[np.ndarray, int] | None, exaggeration: float = 0.5):
        """Upstream `Conditionals` for a reference, taken as the training prompts were
        (`voices.voice_conditionals`); a file's are kept.

        Args:
            audio_prompt: A file, `(samples, sample_rate)`, or None for the model's default voice.
            exaggeration: The emotion exaggeration the conditionals carry.

        Returns:
            Upstream's `Conditionals` (T3's speaker embedding and prompt tokens, S3Gen's reference).
        """
        return voice_conditionals(self, audio_prompt, exaggeration)

    def _use_adapter(self, accent: str | None) -> tuple[str | None, str | None]:
        """Activates the adapter for `accent`; returns (accent for the text, adapter name)."""
        if not self.adapters:
            return accent or self.accent, None
        if len(self.adapters) == 1:
            name = self.adapters[0]
        else:
            name = accent or self.accent
            if name not in self.adapters:
                raise ValueError(f"accent={name!r}: this model has adapters for {self.adapters}; pick one of them.")
        for module in (self.tts.t3, self.tts.s3gen.flow):
            if hasattr(module, "set_adapter") and name in getattr(module, "peft_config", {}):
                module.set_adapter(name)
        return accent or (name if name != "default" else self.accent), name

    # -- synthesis -------------------------------------------------------------------------------------------------
    def settings_for(self, settings: GenerationSettings | None = None, **overrides: Any) -> GenerationSettings:
        """One call's settings, with what depends on this model's generation filled in.

        Args:
            settings: The call's settings (default: upstream's, `GenerationSettings()`).
            **overrides: `GenerationSettings` fields that replace the settings' (an unknown name is an error that
                lists the settings).

        Returns:
            The settings the call decodes with (`repetition_penalty` filled: v2 2.0, v3 1.2).
        """
        return (settings or GenerationSettings()).replace(**overrides).for_generation(self.generation)

    def generate(self, text: str, audio_prompt_path: str | os.PathLike | tuple[np.ndarray, int] | None = None,
                 settings: GenerationSettings | None = None, **overrides: Any) -> torch.Tensor:
        """Speech of `text` in the voice of `audio_prompt_path` (a file, or `(samples, sample_rate)`; None: the
        model's default voice), as upstream's `generate`: a (1, samples) float tensor at `self.sr` (24 kHz),
        watermarked.

        Text longer than one sentence is spoken sentence by sentence (`split_sentences`) and joined with short
        pauses: T3 was trained on single utterances, and upstream's 1000-token budget is 40 s of speech. With
        `batch_size` above 1, that many sentences are decoded together (`decoding.fast_decode_batch`).

        Args:
            text: What to say, in Spanish as people write it (numbers, dates and currency are spelled out).
            audio_prompt_path: The voice to clone; None for the model's default voice.
            settings: How to sample (`GenerationSettings`); default: upstream's.
            **overrides: Any `GenerationSettings` field for this call (`exaggeration=0.7, seed=0, accent="ar"`):
                `repetition_penalty` and `alignment` default to what upstream uses for this model's generation
                (v2 2.0 with the alignment heuristics; v3 and the packs 1.2 without), and the heuristics are off
                where the adapter changed the attention they read (`alignment_matters`).

        Returns:
            The audio, (1, samples) float32 at `self.sr`.
        """
        return self.generate_batch([text], audio_prompt_path, settings, **overrides)[0]

    def generate_batch(self, texts: list[str], audio_prompt_path: str | os.PathLike | tuple[np.ndarray, int] | None
                       = None, settings: GenerationSettings | None = None, **overrides: Any) -> list[torch.Tensor]:
        """`generate` for several texts in one voice: the sentences of all of them are decoded `batch_size` at a
        time (one T3 forward pass per step for the batch), then each text's audio is put together. With
        `batch_size` 1 a seeded text sounds as `generate` makes it alone; in a batch, its audio depends on the
        texts decoded with it (the draws interleave).

        Args:
            texts: The texts to say.
            audio_prompt_path: The voice to clone, as `generate` takes it.
            settings: How to sample, as `generate` takes it.
            **overrides: `GenerationSettings` fields for this call.

        Returns:
            One (1, samples) tensor per text, in order.
        """
        settings = self.settings_for(settings, **overrides)
        per_text = [self._sentences(text) for text in texts]
        sentences = [sentence for group in per_text for sentence in group]
        within_text = [i for group in per_text for i in range(len(group))]
        conds = self.voice(audio_prompt_path, settings.exaggeration)
        accent, adapter = self._use_adapter(settings.accent)
        t3 = self._t3(adapter)
        size = max(1, self.batch_size)
        # Batches of sentences of similar length: a batch decodes until its longest sentence is done.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i])) if size > 1 else range(len(sentences))
        by_sentence: dict[int, np.ndarray] = {}
        for start in range(0, len(sentences), size):
            batch = list(order[start: start + size])
            inputs = [self._text_tokens(sentences[i], accent, t3) for i in batch]
            budgets = [self._budget(sentences[i], accent, settings) for i in batch]
            # One at a time, seeded as `stream` seeds each sentence (seed + its index in its text), so that a text
            # gets the same audio from generate, generate_batch and stream; a batch is seeded by its position.
            offset = within_text[batch[0]] if size == 1 else start
            with self._seeded(None if settings.seed is None else settings.seed + offset):
                if len(batch) == 1:  # alone: with upstream's alignment heuristics where upstream runs them
                    tokens = [decoding.fast_decode(t3, conds.t3, inputs[0], budgets[0], settings,
                                                  alignment=self._alignment(settings.alignment))]
                else:
                    tokens = decoding.fast_decode_batch(t3, conds.t3, inputs, budgets, settings)
                for i, speech in zip(batch, tokens, strict=True):
                    by_sentence[i] = self._wav(speech[0], conds, adapter, watermark=False)
        wavs = [by_sentence[i] for i in range(len(sentences))]
        results = []
        for group in per_text:
            wav = np.concatenate(_with_pauses(wavs[: len(group)], self.sr))
            wavs = wavs[len(group):]
            results.append(torch.from_numpy(apply_watermark(wav, self.sr)).unsqueeze(0))
        return results

    def stream(self, text: str, audio_prompt_path: str | os.PathLike | tuple[np.ndarray, int] | None = None,
               settings: GenerationSettings | None = None, *, chunk_tokens: int | None = None,
               first_chunk_tokens: int | None = None, context_seconds: float | None = STREAM_CONTEXT_SECONDS,
               **overrides: Any) -> Iterator[np.ndarray]:
        """`generate` piece by piece, so playback can start early: yields 1-D float32 chunks at `self.sr`, each
        watermarked.

        Args:
            text: What to say, as `generate` takes it.
            audio_prompt_path: The voice to clone, as `generate` takes it.
            settings: How to sample, as `generate` takes it.
            chunk_tokens: None: one chunk per sentence (followed by its pause); else audio every `chunk_tokens`
                speech tokens (25 per second of speech) while T3 is still decoding (`streaming.ChunkedVocoder`).
            first_chunk_tokens: Tokens of a sentence's first chunk (default `chunk_tokens`; fewer bring the first
                audio sooner).
            context_seconds: After a sentence's first chunk, S3Gen's flow continues from the last
                `context_seconds` of the reference and the speech so far, so each chunk costs the same and the
                reference prompt is paid once; None runs the flow over the whole prompt and all earlier tokens at
                every chunk.
            **overrides: `GenerationSettings` fields for this call, as `generate` takes them.

        Yields:
            Watermarked float32 chunks at `self.sr`.
        """
        from .streaming import ChunkedVocoder

        settings = self.settings_for(settings, **overrides)
        sentences = self._sentences(text)
        conds = self.voice(audio_prompt_path, settings.exaggeration)
        accent, adapter = self._use_adapter(settings.accent)
        t3 = self._t3(adapter)
        alignment = self._alignment(settings.alignment)
        pause = np.zeros(int(SENTENCE_PAUSE_SECONDS * self.sr), dtype=np.float32)
        context_tokens = None if context_seconds is None else max(1, round(context_seconds * TOKENS_PER_SECOND))
        for i, sentence in enumerate(sentences):
            tokens = self._text_tokens(sentence, accent, t3)
            budget = self._budget(sentence, accent, settings)
            with self._seeded(None if settings.seed is None else settings.seed + i):
                last = i == len(sentences) - 1
                if chunk_tokens:
                    vocoder = ChunkedVocoder(self.s3gen, self.s3gen_reference(conds), self.cfm_steps,
                                             flow=self._flow(adapter),
                                             drop_last_token=self.generation.drop_last_token,
                                             context_tokens=context_tokens)
                    for speech, finished in decoding.stream_decode(t3, conds.t3, tokens, budget, settings,
                                                                  chunk_tokens, alignment=alignment,
                                                                  first_chunk_tokens=first_chunk_tokens):
                        wav = vocoder(speech, finished)
                        if wav.size:
                            wav = apply_watermark(wav, self.sr)
                            yield wav if not finished or last else np.concatenate([wav, pause])
                else:
                    speech = decoding.fast_decode(t3, conds.t3, tokens, budget, settings, alignment=alignment)[0]
                    wav = self._wav(speech, conds, adapter)
                    yield wav if last else np.concatenate([wav, pause])

    def synthesize(self, text: str, reference: np.ndarray, reference_sr: int,
                   settings: GenerationSettings | None = None, **overrides: Any) -> np.ndarray:
        """One utterance (not split into sentences) for a reference given as samples: what the evaluation calls,
        each test sentence being one utterance.

        Args:
            text: The sentence to say.
            reference: The voice to clone, as samples (mono float).
            reference_sr: Their sample rate.
            settings: How to sample, as `generate` takes it.
            **overrides: `GenerationSettings` fields for this call.

        Returns:
            A 1-D float32 array at `self.sr`, watermarked.
        """
        settings = self.settings_for(settings, **overrides)
        conds = self.voice((reference, reference_sr), settings.exaggeration)
        with self._seeded(settings.seed):  # one seed for T3's draws and then S3Gen's noise, as upstream's generate
            speech, adapter = self._decode(text, conds, settings.replace(seed=None))
            return self._wav(speech[0], conds, adapter)

    def tokens(self, text: str, audio_prompt_path: str | os.PathLike | tuple[np.ndarray, int] | None = None,
               settings: GenerationSettings | None = None, **overrides: Any) -> torch.Tensor:
        """The speech tokens T3 decodes for `text` spoken as one utterance: what `generate` hands S3Gen for a
        sentence. For inspection, and for checks against upstream.

        Args:
            text: The sentence to say.
            audio_prompt_path: The voice, as `generate` takes it.
            settings: How to sample, as `generate` takes it.
            **overrides: `GenerationSettings` fields for this call.

        Returns:
            A (1, N) tensor of speech token ids, ending with the stop token when it came.
        """
        settings = self.settings_for(settings, **overrides)
        conds = self.voice(audio_prompt_path, settings.exaggeration)
        return self._decode(text, conds, settings)[0]

    def _decode(self, text: str, conds, settings: GenerationSettings) -> tuple[torch.Tensor, str | None]:
        if not text or not text.strip():
            raise ValueError("text is empty: give the sentence to speak.")
        accent, adapter = self._use_adapter(settings.accent)
        t3 = self._t3(adapter)
        with self._seeded(settings.seed):
            return decoding.fast_decode(t3, conds.t3, self._text_tokens(text, accent, t3),
                                       self._budget(text, accent, settings), settings,
                                       alignment=self._alignment(settings.alignment)), adapter

    def _budget(self, sentence: str, accent: str | None, settings: GenerationSettings) -> int:
        """A call's `max_new_tokens` as given, else the sentence's budget from its text (`token_budget`)."""
        return settings.max_new_tokens or self.token_budget(sentence, accent)

    def runs_alignment(self, alignment: bool | None = None) -> bool:
        """Whether upstream's alignment heuristics run for a call with this `alignment` argument."""
        from ..constants import ENGINE_MODES

        return self._alignment(alignment) and decoding.runs_alignment(self.tts.t3) and self.mode not in ENGINE_MODES

    def alignment_matters(self) -> bool:
        """Whether the two alignment settings can make this model say different things in ways the base never
        showed: the heuristics can run on this T3 (multilingual, with the layers they watch) and its attention
        in or below those layers was adapted (they read attention maps the base's thresholds were set on). Such a
        model decodes without them unless told (`decoding.default_alignment`)."""
        if not decoding.runs_alignment(self.tts.t3):
            return False
        if self.adapted_attention is not None:  # a merged model: what its config.json says was adapted
            return self.adapted_attention
        return decoding.adapted_watched_attention(self.tts.t3)

    def _alignment(self, alignment: bool | None) -> bool:
        """Upstream's alignment heuristics for one call: as asked, else the model's setting, else the default
        (`decoding.default_alignment`): the generation's (v2 on, v3 and the packs off), and off where the adapter
        changed the attention they read (`alignment_matters`), as upstream main decodes every model. They run only
        on a multilingual T3 with the layers they watch (`decoding.runs_alignment`)."""
        for choice in (alignment, self.alignment):
            if choice is not None:
                return bool(choice)
        return decoding.default_alignment(self.generation, self.tts.t3, self.adapted_attention)

    def _wav(self, speech: torch.Tensor, conds, adapter: str | None, watermark: bool = True) -> np.ndarray:
        """S3Gen at this model's settings (flow precision and steps, prompt length) for one utterance's tokens."""
        return tokens_to_wav(self.s3gen, speech, self.s3gen_reference(conds), watermark=watermark, sample_rate=self.sr,
                             cfm_steps=self.cfm_steps, flow=self._flow(adapter),
                             drop_last_token=self.generation.drop_last_token)

    def s3gen_reference(self, conds) -> dict:
        """S3Gen's reference for a voice, its prompt cut to the last `s3gen_prompt_seconds` (the prompt is
        continued by the new speech, so its end is kept)."""
        if not self.s3gen_prompt_seconds:
            return conds.gen
        return cut_prompt(conds.gen, max(1, int(self.s3gen_prompt_seconds * TOKENS_PER_SECOND)))

    @staticmethod
    def _sentences(text: str) -> list[str]:
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError("text is empty: give the sentence to speak.")
        return sentences

    def model_text(self, text: str, accent: str | None = None) -> str:
        """What T3 reads for one sentence: the Spanish normalisation for the accent (unless this model was trained
        on unnormalised text, `normalize_text`), then upstream's punctuation clean-up."""
        from ..data.text import text_for_model

        return text_for_model(text, accent=accent, normalize=self.normalize_text)

    def token_budget(self, text: str, accent: str | None = None) -> int:
        """Speech tokens one sentence may take (`default_max_new_tokens`), from the text T3 reads, not as written.

        Args:
            text: The sentence.
            accent: The accent whose normalisation spells the text out.

        Returns:
            The budget, at most `token_cap`.
        """
        budget = default_max_new_tokens(self.model_text(text, accent))
        return budget if self.token_cap is None else min(budget, self.token_cap)

    def _text_tokens(self, text: str, accent: str | None, t3) -> torch.Tensor:
        """T3's text input for one sentence: normalised for the accent, tokenised, between start/stop tokens."""
        import torch.nn.functional as F

        from ..data.text import encode_text

        ids = encode_text(self.tts.tokenizer, self.model_text(text, accent), self.language)
        tokens = F.pad(torch.tensor([ids]), (1, 0), value=t3.hp.start_text_token)
        return F.pad(tokens, (0, 1), value=t3.hp.stop_text_token)

    @contextlib.contextmanager
    def _seeded(self, seed: int | None):
        """Seeds T3's sampling and HiFT's noise source (both draw from torch's generator) without touching the
        caller's random state; nothing when `seed` is None."""
        devices = [torch.device(self.device)] if torch.device(self.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            yield


def _with_pauses(wavs: list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
    pause = np.zeros(int(SENTENCE_PAUSE_SECONDS * sample_rate), dtype=np.float32)
    joined = []
    for i, wav in enumerate(wavs):
        joined += [wav, pause] if i < len(wavs) - 1 else [wav]
    return joined


SENTENCE_PAUSE_SECONDS = 0.25


@functools.lru_cache(maxsize=2)
def load_model(name_or_path: str | None = None, device: str | None = None) -> ChatterboxLatamTTS:
    """The model `generate_speech` uses, loaded once per (name, device): `name_or_path`, else the
    CHATTERBOX_LATAM_MODEL environment variable; the device defaults to CUDA when there is one."""
    name_or_path = name_or_path or os.getenv(MODEL_ENV)
    if not name_or_path:
        raise ValueError(f"No model: pass model=<folder or Hub repo id> or set {MODEL_ENV}.")
    device = device or default_device()
    return ChatterboxLatamTTS.from_pretrained(name_or_path, device=device)


MODEL_ENV = "CHATTERBOX_LATAM_MODEL"
"""The model `generate_speech` and the Space load when not told: a folder or Hub repo id."""


def generate_speech(text: str, reference_audio_path: str | os.PathLike | None, output_path: str | os.PathLike,
                    settings: GenerationSettings | None = None, *,
                    model: "ChatterboxLatamTTS | str | None" = None, **overrides: Any) -> str:
    """Speaks `text` in the voice of `reference_audio_path` into a 24 kHz WAV at `output_path` (watermarked; long
    text is split into sentences) and returns the path: the one-call function.

    Args:
        text: What to say.
        reference_audio_path: The voice to clone; None for the model's default voice.
        output_path: The WAV to write. It is written to a temporary file and renamed, so a crash never leaves a
            partial file there.
        settings: How to sample, as `ChatterboxLatamTTS.generate` takes it.
        model: A loaded `ChatterboxLatamTTS`, a folder or Hub repo id (loaded once and kept), or None for
            CHATTERBOX_LATAM_MODEL.
        **overrides: `GenerationSettings` fields for this call (`seed=0, accent="mx"`).

    Returns:
        `output_path`, as a string.
    """
    if not isinstance(model, ChatterboxLatamTTS):
        model = load_model(model)
    wav = model.generate(text, reference_audio_path, settings, **overrides)
    write_wav(output_path, wav.squeeze(0).numpy(), model.sr)
    return str(output_path)


