"""Batched feature extraction with the base checkpoint's own encoders, and the on-disk cache that holds it.

Training T3 needs, per clip: its S3 speech tokens (25 Hz), a VoiceEncoder speaker embedding, and the prompt
tokens of the first 6 s (what this clip gives when it serves as another clip's reference). Training S3Gen also
needs the 24 kHz 80-bin mel and the CAMPPlus x-vector. These are computed once, here, in batches of similar
length on the GPU when there is one, instead of inside a data loader every epoch.

Each clip's features are one safetensors file named by the clip's content key and the checkpoint fingerprint,
written atomically; a rerun reads them back, and a run killed half-way resumes from the files already written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..constants import PROMPT_TOKENS, S3_SR, S3GEN_SR
from ..models.checkpoint import Checkpoint
from ..models.loading import load_s3gen, load_voice_encoder
from ..utils import atomic_path, default_device


@dataclass
class ClipFeatures:
    """Features of one clip (numpy, on the host)."""

    speech_tokens: np.ndarray  # (T,) int32, 25 Hz
    speaker_emb: np.ndarray  # (256,) float32, unit norm
    prompt_tokens: np.ndarray  # (<=150,) int32, tokens of the first max_prompt_seconds
    speech_feat: np.ndarray | None = None  # (2T, 80) float32, 24 kHz mel for S3Gen
    xvector: np.ndarray | None = None  # (192,) float32, CAMPPlus

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.array(v, order="C")) for k, v in vars(self).items() if v is not None}  # copies: no shared views

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "ClipFeatures":
        return cls(**{k: v.numpy() for k, v in tensors.items()})


def save_atomic(features: ClipFeatures, path: Path) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(features.to_tensors(), str(tmp))


def load_features(path: Path) -> ClipFeatures:
    from safetensors.torch import load_file

    return ClipFeatures.from_tensors(load_file(str(path)))


class FeatureExtractor:
    """Runs the checkpoint's S3 tokenizer, VoiceEncoder and (optionally) CAMPPlus and mel on lists of clips."""

    def __init__(self, checkpoint: Checkpoint, device: str | None = None, with_s3gen: bool = False,
                 max_prompt_seconds: float = 6.0):
        self.device = device or default_device()
        self.with_s3gen = with_s3gen
        self.prompt_samples = int(max_prompt_seconds * S3_SR)
        s3gen = load_s3gen(checkpoint, self.device)
        self.tokenizer = s3gen.tokenizer
        self.speaker_encoder = s3gen.speaker_encoder
        self.mel_extractor = s3gen.mel_extractor
        del s3gen.flow, s3gen.mel2wav  # only the encoders are needed here
        self.voice_encoder = load_voice_encoder(checkpoint, self.device)

    @torch.inference_mode()
    def speech_tokens(self, wavs_16k: list[np.ndarray], max_len: int | None = None) -> list[np.ndarray]:
        """S3 tokens of each clip; the tokenizer pads the batch and masks by length."""
        tensors = [torch.from_numpy(w).float() for w in wavs_16k]
        tokens, lengths = self.tokenizer(tensors, max_len=max_len)
        return [tokens[i, : lengths[i]].cpu().numpy().astype(np.int32) for i in range(len(tensors))]

    @torch.inference_mode()
    def speaker_embeddings(self, wavs_16k: list[np.ndarray]) -> np.ndarray:
        """VoiceEncoder embeddings exactly as upstream computes them for a reference (partials batched)."""
        return self.voice_encoder.embeds_from_wavs(wavs_16k, sample_rate=S3_SR, batch_size=256).astype(np.float32)

    @torch.inference_mode()
    def s3gen_features(self, wav_24k: np.ndarray, wav_16k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """24 kHz mel (frames, 80) and the CAMPPlus x-vector.

        Per clip: CAMPPlus pools over padded frames too, so a padded batch would change the embedding.
        """
        wav = torch.from_numpy(wav_24k).float().to(self.device)[None]
        mel = self.mel_extractor(wav).transpose(1, 2)[0]  # (frames, 80)
        xvector = self.speaker_encoder.inference(torch.from_numpy(wav_16k).float().to(self.device)[None])
        return mel.cpu().numpy().astype(np.float32), xvector[0].cpu().numpy().astype(np.float32)

    def reference_features(self, wavs_24k: list[np.ndarray]) -> list[ClipFeatures]:
        """What inference takes from a reference clip: the prompt tokens of its first 6 s (tokenised alone) and the
        speaker embedding of all of it (no speech tokens)."""
        from .audio import resample

        wavs_16k = [resample(w, S3GEN_SR, S3_SR) for w in wavs_24k]
        prompts = self.speech_tokens([w[: self.prompt_samples] for w in wavs_16k], max_len=PROMPT_TOKENS)
        embeddings = self.speaker_embeddings(wavs_16k)
        return [ClipFeatures(speech_tokens=np.zeros(0, dtype=np.int32), speaker_emb=embeddings[i],
                             prompt_tokens=prompts[i][:PROMPT_TOKENS]) for i in range(len(wavs_24k))]

    def extract(self, wavs_24k: list[np.ndarray]) -> list[ClipFeatures]:
        """Features of a batch of cleaned 24 kHz clips (group clips of similar length for less padding)."""
        from .audio import resample

        wavs_16k = [resample(w, S3GEN_SR, S3_SR) for w in wavs_24k]
        tokens = self.speech_tokens(wavs_16k)
        # The prompt is tokenised from the first 6 s alone, as upstream does at inference, so training sees the
        # same prompt tokens synthesis will; clips no longer than that reuse their full tokens.
        long = [i for i, w in enumerate(wavs_16k) if len(w) > self.prompt_samples]
        prompts = {i: t[:PROMPT_TOKENS] for i, t in enumerate(tokens)}
        if long:
            heads = self.speech_tokens([wavs_16k[i][: self.prompt_samples] for i in long], max_len=PROMPT_TOKENS)
            prompts.update({i: h[:PROMPT_TOKENS] for i, h in zip(long, heads)})
        embeddings = self.speaker_embeddings(wavs_16k)
        results = []
        for i, wav_24k in enumerate(wavs_24k):
            feats = ClipFeatures(speech_tokens=tokens[i], speaker_emb=embeddings[i], prompt_tokens=prompts[i])
            if self.with_s3gen:
                mel, feats.xvector = self.s3gen_features(wav_24k, wavs_16k[i])
                n = min(len(tokens[i]), len(mel) // 2)  # S3Gen wants exactly two mel frames per token
                feats.speech_tokens, feats.speech_feat = tokens[i][:n], mel[: 2 * n]
            results.append(feats)
        return results


def length_batches(durations: list[float], batch_seconds: float) -> list[list[int]]:
    """Indices grouped by similar duration so that (longest clip x batch size) stays under `batch_seconds`."""
    order = sorted(range(len(durations)), key=lambda i: durations[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and durations[index] * (len(current) + 1) > batch_seconds:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches

