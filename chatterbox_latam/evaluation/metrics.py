"""Evaluation metrics, one function each (parler-tts style): it loads its model, computes over all samples, frees.

- `error_rates`: WER and CER with jiwer, under two normalisations: a Spanish-aware one that keeps accents, ñ and
  ü (so "está" and "esta" differ) and Whisper's basic normaliser with diacritics removed; and, for the protocol,
  seed-tts-eval's own (`normalize_seed_tts_eval`).
- `transcribe` / `load_asr`: any transformers ASR checkpoint (default `openai/whisper-large-v3`), Spanish forced.
- `speaker_similarity`: cosine of resemblyzer embeddings (its weights ship with the package);
  `speaker_similarity_wavlm`: the same with a WavLM speaker-verification model, when one can be loaded.
- `dnsmos`: Microsoft's DNSMOS P.835 / P.808 (speechmos ships the ONNX models) as a MOS proxy; `utmos`: UTMOS,
  when its weights can be loaded.
- `real_time_factor`: synthesis seconds over audio seconds.
A model that must come from the Hub fails with `MetricModelUnavailable`, naming it and how to use a local copy.
Those large models also have a `load_*` form that loads once and returns a scorer, for scoring several systems.
"""

from __future__ import annotations

import gc
import re
import string
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from ..constants import DEFAULT_ASR, DEFAULT_WAVLM_SV
from ..data.audio import resample
from ..data.quality import dnsmos  # noqa: F401 (the evaluation's MOS proxy; preparation uses it too)
from ..data.text import normalize_spanish
from ..utils import default_device

UTMOS_REPO = "Blinorot/UTMOS-PyTorch"


class MetricModelUnavailable(RuntimeError):
    """A metric's model could not be loaded (no network, no local copy); the message says how to provide it."""


def normalize_spanish_for_wer(text: str) -> str:
    """Spelled-out, lower-cased, punctuation removed; accents, ñ and ü kept."""
    text = normalize_spanish(unicodedata.normalize("NFC", text)).lower()
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def normalize_whisper_basic(text: str) -> str:
    """Whisper's BasicTextNormalizer with diacritics removed (merges "está" and "esta")."""
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return BasicTextNormalizer(remove_diacritics=True)(text).strip()


SEED_TTS_EVAL_PUNCTUATION = "".join(ch for ch in string.punctuation if ch != "'") + "¿¡«»“”‘’…–—"


def normalize_seed_tts_eval(text: str) -> str:
    """seed-tts-eval's normalisation (its run_wer.py): punctuation removed except the apostrophe, lower case, numbers
    left as written (Whisper writes digits too). Spanish's own marks (¿ ¡ « » and typographic quotes and dashes)
    count as punctuation, as the protocol's Chinese marks do for Chinese."""
    text = text.translate(str.maketrans("", "", SEED_TTS_EVAL_PUNCTUATION))
    return re.sub(r"\s+", " ", text).strip().lower()


NORMALIZERS: dict[str, Callable[[str], str]] = {"spanish": normalize_spanish_for_wer, "whisper": normalize_whisper_basic,
                                                "seed_tts_eval": normalize_seed_tts_eval}
DEFAULT_NORMALIZERS = ("spanish", "whisper")


def error_rates(references: Sequence[str], hypotheses: Sequence[str],
                normalizers: Sequence[str] = DEFAULT_NORMALIZERS) -> dict[str, float]:
    """Corpus WER and CER under each of `normalizers` (keys of `NORMALIZERS`): by default {"wer_spanish",
    "cer_spanish", "wer_whisper", "cer_whisper"}."""
    import jiwer

    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"need as many hypotheses as references (got {len(references)} and {len(hypotheses)}).")
    scores = {}
    for name in normalizers:
        normalize = NORMALIZERS[name]
        refs = [normalize(r) for r in references]
        hyps = [normalize(h) for h in hypotheses]
        # jiwer refuses empty references; an empty pair contributes nothing to either rate.
        pairs = [(r, h) for r, h in zip(refs, hyps) if r]
        refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
        scores[f"wer_{name}"] = float(jiwer.wer(refs, hyps))
        scores[f"cer_{name}"] = float(jiwer.cer(refs, hyps))
    return scores


def load_asr(model: str = DEFAULT_ASR, device: str | None = None, batch_size: int = 8
             ) -> Callable[[Sequence[np.ndarray], int], list[str]]:
    """A transcriber `(wavs, sample_rate) -> texts` over a transformers ASR checkpoint (Hub id or local folder),
    Spanish forced for Whisper. Loaded once: call it for every system."""
    import torch
    from transformers import pipeline

    device = device or default_device()
    try:
        asr = pipeline("automatic-speech-recognition", model=model, device=device,
                       dtype=torch.float16 if device.startswith("cuda") else torch.float32)
    except OSError as error:
        raise MetricModelUnavailable(
            f"ASR model '{model}' could not be loaded ({error.__class__.__name__}). Without network, download it "
            f"once (`hf download {model} --local-dir DIR`) and pass --asr_model DIR."
        ) from error
    kwargs = {"generate_kwargs": {"language": "spanish", "task": "transcribe"}} if "whisper" in str(
        asr.model.config.model_type) else {}

    def transcribe_wavs(wavs: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        inputs = [{"raw": resample(np.asarray(w, dtype=np.float32), sample_rate, 16_000), "sampling_rate": 16_000}
                  for w in wavs]
        return [out["text"].strip() for out in asr(inputs, batch_size=batch_size, **kwargs)]

    return transcribe_wavs


def transcribe(wavs: Sequence[np.ndarray], sample_rate: int, model: str = DEFAULT_ASR, device: str | None = None,
               batch_size: int = 8) -> list[str]:
    """Spanish transcripts of `wavs` (loads the model, transcribes, lets it go)."""
    texts = load_asr(model, device, batch_size)(wavs, sample_rate)
    gc.collect()
    return texts


def speaker_similarity(pairs: Sequence[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> list[float]:
    """Cosine similarity of resemblyzer embeddings for each (generated, reference) pair."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder(device="cpu", verbose=False)

    def embed(wav: np.ndarray) -> np.ndarray:
        return encoder.embed_utterance(preprocess_wav(resample(np.asarray(wav, np.float32), sample_rate, 16_000),
                                                      source_sr=16_000))

    return [float(np.dot(embed(a), embed(b))) for a, b in pairs]


def load_wavlm(model: str = DEFAULT_WAVLM_SV) -> Callable[[Sequence[tuple[np.ndarray, np.ndarray]], int], list[float]]:
    """A scorer `(pairs, sample_rate) -> cosines` over WavLM speaker-verification x-vectors (seed-tts-eval's kind
    of model). Loaded once."""
    import torch
    from transformers import AutoFeatureExtractor, WavLMForXVector

    try:
        extractor = AutoFeatureExtractor.from_pretrained(model)
        network = WavLMForXVector.from_pretrained(model).eval()
    except OSError as error:
        raise MetricModelUnavailable(
            f"WavLM speaker-verification model '{model}' could not be loaded ({error.__class__.__name__}). Without "
            f"network, download it once (`hf download {model} --local-dir DIR`) and pass --wavlm_model DIR."
        ) from error

    @torch.inference_mode()
    def embed(wav: np.ndarray, sample_rate: int) -> torch.Tensor:
        """One clip's x-vector, the clip alone: padded beside a longer one, its features would change (the
        convolutional front end's group norm spans the padding too)."""
        audio = resample(np.asarray(wav, np.float32), sample_rate, 16_000)
        inputs = extractor([audio], sampling_rate=16_000, return_tensors="pt")
        return torch.nn.functional.normalize(network(**inputs).embeddings[0], dim=-1)

    def similarity(pairs: Sequence[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> list[float]:
        return [float((embed(a, sample_rate) * embed(b, sample_rate)).sum()) for a, b in pairs]

    return similarity


def speaker_similarity_wavlm(pairs: Sequence[tuple[np.ndarray, np.ndarray]], sample_rate: int,
                             model: str = DEFAULT_WAVLM_SV) -> list[float]:
    """Cosine similarity of WavLM speaker-verification x-vectors for each pair."""
    scores = load_wavlm(model)(pairs, sample_rate)
    gc.collect()
    return scores


def load_utmos(checkpoint: str | None = None) -> Callable[[Sequence[np.ndarray], int], list[float]]:
    """A scorer `(wavs, sample_rate) -> UTMOS` (UTokyo-SaruLab MOS predictor, fairseq-free `utmos-pytorch`), one clip
    at a time as its authors advise. `checkpoint`: a local `utmos_state_dict.pt`; by default it comes from the Hub
    repo Blinorot/UTMOS-PyTorch. Loaded once."""
    import torch
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from utmos_pytorch import UTMOSScoreTorch

    try:
        model = UTMOSScoreTorch(ckpt_path=checkpoint)
    except (OSError, HfHubHTTPError, LocalEntryNotFoundError) as error:
        raise MetricModelUnavailable(
            f"UTMOS weights ({UTMOS_REPO}, utmos_state_dict.pt) could not be loaded ({error.__class__.__name__}). "
            f"Without network, download them once (`hf download {UTMOS_REPO} utmos_state_dict.pt --local-dir DIR`) "
            "and pass --utmos_checkpoint DIR/utmos_state_dict.pt."
        ) from error

    def score(wavs: Sequence[np.ndarray], sample_rate: int) -> list[float]:
        return [float(model.score(torch.from_numpy(resample(np.asarray(w, np.float32), sample_rate, 16_000))))
                for w in wavs]

    return score


def utmos(wavs: Sequence[np.ndarray], sample_rate: int, checkpoint: str | None = None) -> list[float]:
    """UTMOS per clip (loads the model, scores, lets it go)."""
    scores = load_utmos(checkpoint)(wavs, sample_rate)
    gc.collect()
    return scores


def real_time_factor(synthesis_seconds: float, audio_seconds: float) -> float:
    """Seconds spent synthesising per second of audio (below 1.0 is faster than real time)."""
    return synthesis_seconds / audio_seconds if audio_seconds > 0 else float("inf")

