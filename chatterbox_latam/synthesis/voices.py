"""Voices: a reference recording -> upstream's `Conditionals` (T3's speaker embedding and prompt tokens, S3Gen's
reference), taken as training took its prompts.

A reference is cleaned as the training clips were (the adapter's `reference_cleaning`), then upstream's own
`prepare_conditionals` takes the VoiceEncoder embedding, the prompt's speech tokens and S3Gen's reference from it;
T3's prompt is as long as the training prompts were. Upstream's method stores its result on the model, so it runs
on a shallow copy (`compat.conditionals_of`): the model's default voice, S3Gen and prompt length never change, and
two threads conditioning two voices at once each get their own.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compat import conditionals_of
from ..constants import S3_SR, S3GEN_SR
from ..utils import wav_bytes

VOICE_CACHE_SIZE = 8
"""Reference files whose conditionals a model keeps (by path, modification time and size)."""


def voice_conditionals(model, audio_prompt: str | os.PathLike | tuple[np.ndarray, int] | None,
                       exaggeration: float = 0.5):
    """`ChatterboxLatamTTS.voice`: upstream `Conditionals` for a reference: a file (cached per file), samples as `(array, sample_rate)`, or
    None for the model's default voice. A reference is cleaned as the training clips were
    (`reference_cleaning`) before upstream's `prepare_conditionals` takes the speaker embedding, the prompt
    tokens and S3Gen's prompt from it."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    if audio_prompt is None:
        if model.tts.conds is None:
            raise ValueError("This model has no default voice: pass audio_prompt_path=<a WAV of the voice to "
                             "clone> (merge with --default_voice to give it one).")
        conds = model.tts.conds
    elif isinstance(audio_prompt, tuple):
        conds = model_conditionals(model, audio_prompt, exaggeration)
    else:
        stat = os.stat(audio_prompt)
        key = (os.path.abspath(audio_prompt), stat.st_mtime_ns, stat.st_size, id(model.s3gen),
               model.t3_prompt_seconds)
        if key not in model._voices:
            model._voices = {**dict(list(model._voices.items())[-7:]),
                            key: model_conditionals(model, audio_prompt, exaggeration)}
        conds = model._voices[key]
    if float(conds.t3.emotion_adv.flatten()[0]) != float(exaggeration):
        t3 = conds.t3
        emotion = exaggeration * torch.ones(1, 1, 1, device=t3.speaker_emb.device)
        conds = type(conds)(T3Cond(speaker_emb=t3.speaker_emb,
                                   cond_prompt_speech_tokens=t3.cond_prompt_speech_tokens, emotion_adv=emotion),
                            conds.gen)
    return conds

def model_conditionals(model, reference, exaggeration: float):
    """Upstream's conditionals; with the meanflow decoder, S3Gen's reference is taken by that decoder's own
    `embed_ref` (its tokenizer and speaker encoder), as Chatterbox-Turbo takes it. The model's default voice
    (no reference) keeps the reference its own S3Gen took."""
    conds = reference_conditionals(model.tts, reference, exaggeration, model.reference_cleaning,
                                   prompt_seconds=model.t3_prompt_seconds)
    if model.s3gen is not model.tts.s3gen:
        decoder_conds = reference_conditionals(model.tts, reference, exaggeration, model.reference_cleaning,
                                               s3gen=model.s3gen)
        conds = type(conds)(conds.t3, decoder_conds.gen)
    return conds


def upstream_prompt_seconds(tts) -> float:
    """Seconds of a reference upstream tokenises for T3's prompt (`ENC_COND_LEN`, 6 s)."""
    return type(tts).ENC_COND_LEN / S3_SR


def reference_conditionals(tts, reference: str | os.PathLike | tuple[np.ndarray, int], exaggeration: float = 0.5,
                           cleaning: dict[str, Any] | None = None, s3gen=None, prompt_seconds: float | None = None):
    """Upstream `Conditionals` (speaker embedding, prompt tokens, S3Gen reference) of a reference file or
    `(samples, sample_rate)`, taken by upstream's own `prepare_conditionals` after the reference went through
    `cleaning` (the fields of `audio.CleaningConfig` the training clips were cleaned with: trim, loudness; None:
    as it is). `s3gen`: another S3Gen to take them with (the meanflow decoder). `prompt_seconds`: T3's prompt is
    the tokens of the reference's first that many seconds, tokenised alone, as training prompts were (a model
    trained with `max_prompt_seconds` below upstream's 6 s); upstream's `ENC_COND_LEN` is set to it for the call.
    The model's default voice, S3Gen and prompt length are left as they were (`compat.conditionals_of`)."""
    # upstream tokenises `ref_16k_wav[:self.ENC_COND_LEN]`, alone, for the prompt
    prompt_samples = None
    if prompt_seconds is not None and prompt_seconds < upstream_prompt_seconds(tts):
        prompt_samples = int(prompt_seconds * S3_SR)
    with _reference_file(reference, cleaning) as path:
        return conditionals_of(tts, str(path), exaggeration, s3gen=s3gen, prompt_samples=prompt_samples)


def voice_from(reference: str | os.PathLike | tuple[np.ndarray, int]):
    """A default voice for `models.merge.merge_adapter`: the conditionals of `reference`, cleaned with the settings
    the adapter's training clips were cleaned with and with T3's prompt as long as its training prompts (both
    recorded in its adapter.json), as every reference at inference."""
    def default_voice(tts, adapter_metadata: dict[str, Any]):
        return reference_conditionals(tts, reference, cleaning=adapter_metadata.get("reference_cleaning"),
                                      prompt_seconds=adapter_metadata.get("max_prompt_seconds"))

    return default_voice


@contextlib.contextmanager
def _reference_file(reference: str | os.PathLike | tuple[np.ndarray, int], cleaning: dict[str, Any] | None):
    """A file upstream's `prepare_conditionals` can read: the reference itself when there is nothing to do, else the
    samples (cleaned with `cleaning`) in a temporary WAV removed afterwards."""
    import tempfile

    from ..data.audio import CleaningConfig, Rejected, clean_audio, decode_audio

    if cleaning is None and not isinstance(reference, tuple):
        yield reference
        return
    if isinstance(reference, tuple):
        samples, rate = np.asarray(reference[0], dtype=np.float32), int(reference[1])
    else:
        try:
            samples, rate = decode_audio(reference)
        except Rejected as error:
            raise ValueError(f"The reference {reference} cannot be read ({error}): give a WAV, FLAC, MP3 or OGG "
                             "recording of the voice.") from None
    if cleaning is not None:
        # Same steps as the training clips, without their length bounds: upstream keeps the first 10 s of a reference.
        config = CleaningConfig(**{**cleaning, "sampling_rate": S3GEN_SR, "min_seconds": 0.3,
                                   "max_seconds": float("inf")})
        try:
            samples, rate = clean_audio(samples, rate, config), config.sampling_rate
        except Rejected as error:
            raise ValueError(f"The reference holds no usable speech ({error}): give a few seconds of clear speech "
                             "of the voice to clone.") from None
    with tempfile.TemporaryDirectory(prefix="chatterbox-latam-ref-") as tmp:
        path = Path(tmp) / "reference.wav"
        path.write_bytes(wav_bytes(samples.T if samples.ndim == 2 else samples, rate, subtype="FLOAT"))
        yield path
