"""Serving one model to many users: input limits, reference checks, one synthesis at a time, a bounded queue.

`SpeechService` is what the Space's Gradio handlers and its REST endpoint share. It loads the model lazily (a
Space starts answering before the weights are in memory), checks every input before any work (text length,
reference size, format and duration), never opens a path a user supplied (references arrive as bytes, or as a
file inside the upload folder the server owns), and runs one synthesis at a time on the one model, refusing work
when more than `queue_size` requests are already waiting.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import ACCENTS
from ..data.text import split_sentences
from ..models.checkpoint import CheckpointNotFoundError
from ..utils import default_device
from .config import GenerationSettings, parse_alignment
from .decoding import runs_alignment
from .tts import ChatterboxLatamTTS

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """Bad input; the message says what to change. `status` is the HTTP status a REST answer carries."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class Busy(RuntimeError):
    """More requests are waiting than the queue holds; retry later (HTTP 503)."""


def default_decoder(device: str, s3gen_adapted: bool) -> str:
    """S3Gen's decoder when S3GEN is auto (the default): on a CPU the meanflow one (a tenth of the flow's work: what
    makes real time reachable on two cores), unless the model's own S3Gen was fine-tuned (the meanflow decoder would
    leave that training unused: S3GEN=meanflow asks for it anyway); on a GPU the model's own."""
    return "meanflow" if str(device).startswith("cpu") and not s3gen_adapted else "standard"


def default_s3gen_mode(device: str) -> str:
    """S3Gen's flow precision when S3GEN_MODE is auto (the default): bf16 on a CPU that computes it natively
    (`utils.cpu_has_bf16`; the flow takes about half fp32's time there), fp32 elsewhere (a CPU that only emulates
    bf16, and a GPU, where the flow is far from the bottleneck)."""
    from ..utils import cpu_has_bf16

    return "bf16" if str(device).startswith("cpu") and cpu_has_bf16() else "fp32"


def _env_int(name: str, default: int) -> int:
    return int(os.getenv(name, default))


@dataclass
class Limits:
    """Caps on what one request may ask for (environment variables of the same name, upper-cased, override)."""

    max_text_chars: int = field(default_factory=lambda: _env_int("MAX_TEXT_CHARS", 600),
                                metadata={"help": "Longest text accepted, in characters."})
    max_reference_seconds: int = field(default_factory=lambda: _env_int("MAX_REFERENCE_SECONDS", 30),
                                       metadata={"help": "Longest reference clip accepted."})
    min_reference_seconds: float = field(default=1.0, metadata={"help": "Shortest reference clip accepted."})
    max_reference_mb: int = field(default_factory=lambda: _env_int("MAX_REFERENCE_MB", 10),
                                  metadata={"help": "Largest reference upload accepted, in MB."})
    queue_size: int = field(default_factory=lambda: _env_int("QUEUE_SIZE", 32),
                            metadata={"help": "Requests allowed to wait for the model; more get 'busy'."})
    stream_chunk_tokens: int = field(default_factory=lambda: _env_int("STREAM_CHUNK_TOKENS", 50),
                                     metadata={"help": "Streaming sends audio every this many speech tokens (25 "
                                               "per second of speech) while T3 decodes; 0: once per sentence."})
    stream_first_chunk_tokens: int = field(default_factory=lambda: _env_int("STREAM_FIRST_CHUNK_TOKENS", 16),
                                           metadata={"help": "Speech tokens of a sentence's first streamed chunk: "
                                                     "fewer bring the first audio sooner."})


USER_RANGES = {"exaggeration": (0.0, 2.0), "cfg_weight": (0.0, 1.0), "temperature": (0.05, 2.0)}
"""What a user of the Space or the API may choose for each setting (beyond them speech breaks down)."""


def request_settings(**values: Any) -> GenerationSettings:
    """One request's `GenerationSettings` from what the user sent: a value left out (None or empty) takes the
    default; a bad one is an `InputError` that says what to send."""
    values = {name: value for name, value in values.items() if value is not None and value != ""}
    for name, (low, high) in USER_RANGES.items():
        value = values.get(name, low)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
            raise InputError(f"{name}={value!r}: use a number from {low} to {high}.")
    seed = values.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise InputError(f"seed={seed!r}: use a whole number from 0 to 4294967295, or none.")
    if values.get("accent") is not None and values["accent"] not in ACCENTS:
        raise InputError(f"accent={values['accent']!r}: use one of {list(ACCENTS)}, or none.")
    try:
        return GenerationSettings().replace(**values)
    except (TypeError, ValueError) as error:
        raise InputError(str(error)) from error


class SpeechService:
    """The model behind the Space and the REST API (see the module docstring)."""

    def __init__(self, model_name: str, device: str | None = None, limits: Limits | None = None):
        self.model_name = model_name
        self.device = device
        self.limits = limits or Limits()
        self._model: ChatterboxLatamTTS | None = None
        self._load_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._waiting = 0
        self._count_lock = threading.Lock()

    @property
    def model(self) -> ChatterboxLatamTTS:
        with self._load_lock:
            if self._model is None:

                device = self.device or default_device()
                model = ChatterboxLatamTTS.from_pretrained(self.model_name, device=device,
                                                           mode=os.getenv("SYNTHESIS_MODE", "auto"),
                                                           t3_model=os.getenv("T3_MODEL") or None)
                s3gen_mode = os.getenv("S3GEN_MODE", "auto")
                settings = (default_s3gen_mode(device) if s3gen_mode == "auto" else s3gen_mode,
                            _env_int("CFM_STEPS", 0) or None,
                            float(os.getenv("S3GEN_PROMPT_SECONDS", 0)) or None)
                decoder = os.getenv("S3GEN", "auto")
                try:
                    model.set_s3gen(*settings,
                                    default_decoder(device, model.s3gen_adapted()) if decoder == "auto" else decoder,
                                    os.getenv("MEANFLOW_MODEL") or None)
                except CheckpointNotFoundError as error:
                    if decoder != "auto":
                        raise
                    logger.warning("the meanflow S3Gen decoder is not available (%s): the standard one is used", error)
                    model.set_s3gen(*settings)
                model.alignment = parse_alignment(os.getenv("ALIGNMENT"))
                self._model = model
            return self._model

    @property
    def accents(self) -> list[str]:
        return self.model.accents

    @property
    def mode(self) -> str:
        """The precision synthesis runs at, said to users. SYNTHESIS_MODE (T3): auto (default: the fastest mode
        whose agreement with fp32 holds up, measured at start), fp32, bf16, int8, int8-wo, int4-wo, llamacpp-q4_0 or
        llamacpp-q8_0; S3GEN: the flow decoder, auto (default: meanflow on a CPU unless the model's S3Gen was
        fine-tuned, `default_decoder`, the standard one when it cannot be loaded; standard on a GPU), standard or
        meanflow (Resemble's 2-step decoder;
        MEANFLOW_MODEL: where it loads from, default the model's folder or ResembleAI/chatterbox-turbo); S3GEN_MODE:
        the flow's precision, auto (default: bf16 on a CPU with bf16 arithmetic, `default_s3gen_mode`), fp32 or
        bf16; CFM_STEPS:
        S3Gen's flow steps (default: the decoder's own, 10 or 2); S3GEN_PROMPT_SECONDS: the
        reference's last seconds S3Gen continues from (default: all of it); ALIGNMENT: upstream's alignment
        heuristics, auto (default: as upstream for the model's generation, and off where an adapter changed the
        attention they read), on or off; T3_MODEL: v2 or v3 when the
        model is ResembleAI/chatterbox itself."""
        model = self.model
        report = next((r for r in model.mode_reports if r.mode == model.mode), None)
        said = f"{model.mode} on {model.device}"
        if report is not None and model.mode != "fp32":
            said += f" (agrees with fp32 on {report.agreement:.0%} of steps)"
        changes = [model.s3gen_changes] if model.s3gen_changes else []
        setting = model._alignment(None)
        # a setting that differs from upstream's for the generation: asked for, or the default on adapted attention
        if setting != model.generation.alignment and (model.alignment is not None or runs_alignment(model.tts.t3)):
            why = " (the adapter changed the attention they read)" if model.alignment is None else ""
            changes.append(f"alignment heuristics {'on' if setting else 'off'}{why}")
        return "; ".join([said, *changes])

    # -- checks ----------------------------------------------------------------------------------------------------
    def check_text(self, text: str | None) -> str:
        text = " ".join((text or "").split())
        if not text:
            raise InputError("The text is empty: write what the voice should say.")
        if len(text) > self.limits.max_text_chars:
            raise InputError(f"The text has {len(text)} characters; the limit is {self.limits.max_text_chars}. "
                             "Shorten it or split it into several requests.", status=413)
        if not split_sentences(text):
            raise InputError("The text has nothing to speak.")
        return text

    def check_accent(self, accent: str | None) -> str | None:
        accents = self.accents
        if accents and accent not in accents:
            if accent is None and len(accents) == 1:
                return accents[0]
            raise InputError(f"accent={accent!r}: this model has adapters for {accents}.")
        return accent

    def load_reference(self, data: bytes | None) -> tuple[np.ndarray, int]:
        """Decodes an uploaded reference (bytes) to mono float32; rejects what is not usable audio."""
        from ..data.audio import Rejected, decode_audio, to_mono

        if not data:
            raise InputError("No reference audio: upload or record a few seconds of the voice to clone.")
        if len(data) > self.limits.max_reference_mb * 1_000_000:
            raise InputError(f"The reference is {len(data) / 1e6:.1f} MB; the limit is {self.limits.max_reference_mb} "
                             "MB. Upload a shorter clip (5-15 s is enough).", status=413)
        try:
            samples, rate = decode_audio(data)
        except Rejected as error:
            raise InputError(f"The reference is not usable audio ({error.reason}). Upload a WAV, FLAC, MP3 or OGG "
                             "recording.", status=415) from error
        wav = to_mono(samples)
        seconds = len(wav) / rate
        if seconds > self.limits.max_reference_seconds:
            raise InputError(f"The reference lasts {seconds:.0f} s; the limit is {self.limits.max_reference_seconds} "
                             "s. 5-15 s of clear speech is enough.")
        if seconds < self.limits.min_reference_seconds:
            raise InputError(f"The reference lasts {seconds:.1f} s: give at least "
                             f"{self.limits.min_reference_seconds:.0f} s of speech.")
        return wav.astype(np.float32), rate

    def read_upload(self, path: str | os.PathLike | None, upload_root: str | os.PathLike) -> bytes | None:
        """The bytes of a file the web framework stored under `upload_root`; any other path is refused."""
        if path is None:
            return None
        resolved, root = Path(path).resolve(), Path(upload_root).resolve()
        if root not in resolved.parents:
            raise InputError("The reference must be uploaded, not given as a path.", status=400)
        return resolved.read_bytes()

    # -- synthesis -------------------------------------------------------------------------------------------------
    def _slot(self):
        service = self

        class Slot:
            def __enter__(self):
                with service._count_lock:
                    if service._waiting >= service.limits.queue_size:
                        raise Busy(f"{service._waiting} requests are waiting; try again in a minute.")
                    service._waiting += 1
                service._model_lock.acquire()
                with service._count_lock:
                    service._waiting -= 1

            def __exit__(self, *exc):
                service._model_lock.release()

        return Slot()

    def stream(self, text: str, reference: tuple[np.ndarray, int], settings: GenerationSettings) -> Iterator[np.ndarray]:
        """Checked inputs -> watermarked 24 kHz chunks, the first after `limits.stream_first_chunk_tokens` speech
        tokens, then every `limits.stream_chunk_tokens` (or one per sentence): the Space's streaming mode."""
        text, accent = self.check_text(text), self.check_accent(settings.accent)
        with self._slot():
            yield from self.model.stream(text, reference, settings.replace(accent=accent),
                                         chunk_tokens=self.limits.stream_chunk_tokens or None,
                                         first_chunk_tokens=self.limits.stream_first_chunk_tokens or None)

    def synthesize(self, text: str, reference: tuple[np.ndarray, int], settings: GenerationSettings) -> np.ndarray:
        """Checked inputs -> the whole utterance, as `ChatterboxLatamTTS.generate` makes it."""
        text, accent = self.check_text(text), self.check_accent(settings.accent)
        with self._slot():
            return self.model.generate(text, reference, settings.replace(accent=accent)).squeeze(0).numpy()


def settings_record(text: str, settings: GenerationSettings, mode: str) -> dict[str, Any]:
    """What feedback stores about a result: the inputs' settings, never the voice unless the user agrees."""
    return {"text": text, "accent": settings.accent, "exaggeration": settings.exaggeration,
            "cfg_weight": settings.cfg_weight, "temperature": settings.temperature, "seed": settings.seed,
            "mode": mode}

