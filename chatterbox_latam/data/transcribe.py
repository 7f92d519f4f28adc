"""Words with their timings in a long recording: heard by an ASR, or placed by forced alignment of a known text.

- `WhisperTranscriber`: transformers' ASR pipeline with word timestamps (Whisper, default
  `openai/whisper-large-v3`), and a clip-level confidence: the ASR's average log-probability of the clip's text
  given the clip's audio (teacher-forced, as Whisper's own `logprob_threshold` judges a decoding; below -1 Whisper
  treats it as failed).
- `CtcAligner`: known text (an audiobook's chapter) placed on the audio by CTC forced alignment
  (`torchaudio.functional.forced_align`) with a character CTC model from transformers (default
  `jonatasgrosman/wav2vec2-large-xlsr-53-spanish`, WhisperX's Spanish aligner); each word keeps the book's own
  spelling, and its score is the mean probability of its characters' frames.

Anything with the same two methods (`words(wav)`, `confidence(wav, text)`) can stand in for the ASR, as the tests
do; audio is mono float32 at `vad.VAD_SR`.
"""

from __future__ import annotations

import functools
import re
from typing import Protocol

import numpy as np

from ..constants import DEFAULT_ALIGNER, DEFAULT_ASR
from .text import normalize_spanish
from .vad import VAD_SR, Word

MAX_ALIGNMENT_TABLE = 6e9
"""Bytes of forced alignment's back-pointer table (frames x (2 x characters + 1)): a 30-minute chapter of about
27,000 characters takes about 5 GB."""


class ModelUnavailable(RuntimeError):
    """An ASR or aligner checkpoint that cannot be loaded (offline, wrong id); the message says what to do."""


class Transcriber(Protocol):
    def words(self, wav: np.ndarray) -> list[Word]:
        """The words heard in `wav`, in order, with their timings in seconds."""

    def confidence(self, wav: np.ndarray, text: str) -> float | None:
        """How sure the ASR is that `wav` says `text`: average log-probability per token (None: cannot say)."""


def _load(kind: str, model_id: str, loader):
    try:
        return loader()
    except (OSError, ValueError) as error:
        raise ModelUnavailable(
            f"{kind} {model_id!r} cannot be loaded ({str(error).splitlines()[0][:200]}). Give a local folder or a Hub "
            "id that is reachable; a read script (--script) needs no model but the VAD.") from None


class WhisperTranscriber:
    """Whisper (or any transformers seq2seq ASR checkpoint) with word timestamps, on `device`."""

    def __init__(self, model_id: str = DEFAULT_ASR, language: str = "es", device: str = "cpu",
                 batch_size: int = 8):
        import torch
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor, pipeline

        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self.model = _load("the ASR", model_id, lambda: AutoModelForSpeechSeq2Seq.from_pretrained(
            model_id, dtype=dtype).to(device).eval())
        self.processor = _load("the ASR", model_id, lambda: AutoProcessor.from_pretrained(model_id))
        self.language, self.device, self.dtype = language, device, dtype
        self.pipe = pipeline("automatic-speech-recognition", model=self.model, tokenizer=self.processor.tokenizer,
                             feature_extractor=self.processor.feature_extractor, chunk_length_s=30,
                             batch_size=batch_size, device=self.model.device, dtype=dtype)

    def words(self, wav: np.ndarray) -> list[Word]:
        out = self.pipe({"raw": np.asarray(wav, np.float32), "sampling_rate": VAD_SR}, return_timestamps="word",
                        generate_kwargs={"language": self.language, "task": "transcribe"})
        words = []
        for chunk in out.get("chunks", []):
            start, end = chunk["timestamp"]
            text = chunk["text"].strip()
            if text and start is not None:
                words.append(Word(float(start), float(end if end is not None else start), text))
        return words

    def confidence(self, wav: np.ndarray, text: str) -> float | None:
        import torch

        tokenizer = self.processor.tokenizer
        tokenizer.set_prefix_tokens(language=self.language, task="transcribe", predict_timestamps=False)
        ids = torch.tensor([tokenizer(text.strip()).input_ids], device=self.model.device)
        prefix = len(tokenizer.prefix_tokens)
        features = self.processor.feature_extractor(np.asarray(wav, np.float32), sampling_rate=VAD_SR,
                                                    return_tensors="pt").input_features
        with torch.inference_mode():
            logits = self.model(input_features=features.to(self.model.device, self.dtype),
                                decoder_input_ids=ids[:, :-1]).logits.float()
        scores = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[0, prefix - 1:, 0]
        return float(scores.mean()) if scores.numel() else None


class CtcAligner:
    """Forced alignment of known text with a character CTC checkpoint (Wav2Vec2-style, transformers)."""

    def __init__(self, model_id: str = DEFAULT_ALIGNER, device: str = "cpu", window_seconds: float = 30.0):
        from transformers import AutoModelForCTC, AutoProcessor

        self.model = _load("the aligner", model_id, lambda: AutoModelForCTC.from_pretrained(model_id).to(device)
                           .eval())
        self.processor = _load("the aligner", model_id, lambda: AutoProcessor.from_pretrained(model_id))
        self.device, self.window = device, window_seconds
        vocab = self.processor.tokenizer.get_vocab()
        self.vocab = {token.lower(): index for token, index in vocab.items()}
        self.blank = self.processor.tokenizer.pad_token_id
        self.separator = self.vocab.get(self.processor.tokenizer.word_delimiter_token or "|")

    def emissions(self, wav: np.ndarray) -> np.ndarray:
        """Log-probabilities per frame (T, C), the recording run in windows so that an hour fits in memory."""
        import torch

        step = int(self.window * VAD_SR)
        chunks = []
        for start in range(0, max(len(wav), 1), step):
            piece = np.asarray(wav[start:start + step], np.float32)
            if len(piece) < 400:  # shorter than one frame's receptive field
                piece = np.pad(piece, (0, 400 - len(piece)))
            inputs = self.processor.feature_extractor(piece, sampling_rate=VAD_SR, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(inputs.input_values.to(self.device)).logits[0].float()
            chunks.append(logits.log_softmax(-1).cpu().numpy())
        return np.concatenate(chunks)

    def _targets(self, word: str) -> list[int]:
        spoken = normalize_spanish(word).lower()
        return [self.vocab[ch] for ch in spoken if ch in self.vocab and self.vocab[ch] not in (self.blank,
                                                                                               self.separator)]

    def align(self, wav: np.ndarray, text: str) -> list[Word]:
        """Every word of `text` (split on whitespace, as written) with its timing and score; a word with nothing
        the model can spell (a dash, a symbol) gets the end of the word before it."""
        import torch
        import torchaudio.functional as F

        words = text.split()
        targets_per_word = [self._targets(word) for word in words]
        targets, owner = [], []
        for index, ids in enumerate(targets_per_word):
            if ids and targets and self.separator is not None:
                targets.append(self.separator)
                owner.append(-1)
            targets += ids
            owner += [index] * len(ids)
        if not targets:
            raise ValueError("the text holds nothing the aligner can spell: check that it is the recording's text.")
        emission = self.emissions(wav)
        frames = emission.shape[0]
        needed = len(targets) + sum(a == b for a, b in zip(targets, targets[1:]))
        if needed > frames:
            raise ValueError(f"the text needs {needed} frames but the audio has {frames}: the text is longer than "
                             "the recording (is it the right file?).")
        if frames * (2 * len(targets) + 1) > MAX_ALIGNMENT_TABLE:
            raise ValueError(f"{len(wav) / VAD_SR / 60:.0f} minutes with {len(words)} words is too long to align at "
                             f"once (the aligner's table would take {frames * (2 * len(targets) + 1) / 1e9:.0f} GB): "
                             "split the recording and its text into chapters of at most about 30 minutes.")
        path, scores = F.forced_align(torch.from_numpy(emission)[None], torch.tensor([targets], dtype=torch.int32),
                                      blank=self.blank)
        spans = F.merge_tokens(path[0], scores[0].exp(), blank=self.blank)
        seconds_per_frame = len(wav) / VAD_SR / frames
        timed: dict[int, list] = {}
        for span, who in zip(spans, owner):
            if who >= 0:
                timed.setdefault(who, []).append(span)
        result: list[Word] = []
        for index, word in enumerate(words):
            if index in timed:
                got = timed[index]
                result.append(Word(got[0].start * seconds_per_frame, got[-1].end * seconds_per_frame, word,
                                   float(np.mean([span.score for span in got]))))
            else:
                at = result[-1].end if result else 0.0
                result.append(Word(at, at, word))
        return result


@functools.lru_cache(maxsize=4096)
def _letters(text: str) -> str:
    return re.sub(r"[^\w]", "", normalize_spanish(text).lower())


def character_error_rate(hypothesis: str, reference: str) -> float:
    """CER between two texts after the project's normalisation (spelled-out numbers, no punctuation or spaces)."""
    import jiwer

    reference, hypothesis = _letters(reference), _letters(hypothesis)
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return float(jiwer.cer(reference, hypothesis))
