"""Audio while T3 is still decoding: S3Gen over a growing token sequence, one chunk at a time.

This is CosyVoice2's streaming `token2wav` (S3Gen is CosyVoice2's flow and HiFT): each chunk runs the flow over all
tokens so far, holds back the mel frames of the last tokens (the encoder's 3-token lookahead: they change once
the next tokens are known) until the utterance is finished, and vocodes only the new frames. HiFT is given the
previous chunk's last mel frames and its excitation source (its `cache_source`), so the harmonic source continues
across the seam, and the re-made overlap is cross-faded (Hamming window) into the previous chunk's held-back tail.

CosyVoice2 runs the flow again over the whole prompt and all earlier tokens at every chunk, so a chunk costs more the
later it comes, and every chunk pays the reference prompt again. With `context_tokens` (what `stream` uses) a chunk
after the first pays only a fixed window instead: the flow continues from the last `context_tokens` of the
reference prompt followed by the speech already made, as tokens and their finished mel frames, which is how the
flow was trained (its prompt is the mel of the speech before, from the same speaker), and the speaker embedding
stays the reference's. The reference prompt is paid once, by the first chunk; `benchmarks/synthesis.py` measures
both ways.
"""

from __future__ import annotations

import numpy as np
import torch

from ..compat import flow_frames_per_token, flow_lookahead_tokens, hift_inference
from ..constants import SAMPLES_PER_TOKEN, SPEECH_VOCAB_SIZE
from .vocoder import fade_in, flow_mels, with_prompt, with_silence_tail

MEL_OVERLAP = 8  # mel frames re-made at each seam (CosyVoice2's mel_cache_len)
SAMPLES_PER_MEL = 480  # HiFT's hop at 24 kHz (50 mel frames per second, two per speech token)


class ChunkedVocoder:
    """Feeds speech tokens in, gets 1-D float32 audio out, chunk by chunk (see the module docstring).

        vocoder = ChunkedVocoder(s3gen, conds.gen, cfm_steps=10)
        for tokens, finished in stream_decode(...):
            play(vocoder(tokens, finished))
    """

    def __init__(self, s3gen, ref_dict: dict, cfm_steps: int | None = None, flow=None, drop_last_token: bool = False,
                 context_tokens: int | None = None):
        self.s3gen, self.ref_dict, self.cfm_steps = s3gen, ref_dict, cfm_steps
        if context_tokens is not None and context_tokens < 1:
            raise ValueError(f"context_tokens={context_tokens}: give at least 1 (or None for the whole prompt).")
        self.context_tokens = context_tokens  # None: every chunk runs the flow over the prompt and all tokens
        self.drop_last_token = drop_last_token  # v3: the last token's audio is cut, as `tokens_to_wav` cuts it
        self.flow = flow or s3gen  # the S3Gen the flow runs on (`vocoder.flow_for_mode`); HiFT runs on s3gen
        self.tokens = torch.zeros(0, dtype=torch.long, device=s3gen.device)
        self.mels_done = 0
        # Upstream's flow takes a reference mel longer than two frames per prompt token as prompt too, so the speech's
        # first `shift` frames are not made: frame i of the audio is the speech's frame i + shift.
        self.shift = ref_dict["prompt_feat"].shape[1] - 2 * ref_dict["prompt_token"].shape[1]
        self.finished = torch.zeros(0, ref_dict["prompt_feat"].shape[2], device=s3gen.device)  # made mels (frames, 80)
        self.cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # mel, source, speech tail
        self.overlap = MEL_OVERLAP * SAMPLES_PER_MEL
        window = torch.hamming_window(2 * self.overlap, periodic=False, device=s3gen.device)
        self.fade_in, self.fade_out = window[: self.overlap], window[self.overlap:]

    def __call__(self, new_tokens: torch.Tensor, finished: bool) -> np.ndarray:
        """Audio for the tokens so far that is ready (empty while there is too little). Leaves torch's random
        state as it found it (the flow and HiFT draw noise), so T3, decoding between calls, draws what it would
        draw without them: a seed gives the same tokens streamed or not."""
        device = self.tokens.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return self._audio(new_tokens, finished)

    @torch.inference_mode()
    def _audio(self, new_tokens: torch.Tensor, finished: bool) -> np.ndarray:
        new_tokens = new_tokens.flatten().to(self.tokens.device)
        self.tokens = torch.cat([self.tokens, new_tokens[new_tokens < SPEECH_VOCAB_SIZE]])
        lookahead = flow_lookahead_tokens(self.s3gen)
        if len(self.tokens) == 0 or (not finished and len(self.tokens) <= lookahead + MEL_OVERLAP // 2):
            return np.zeros(0, dtype=np.float32)  # nothing to say yet
        # finalize=True always: chatterbox 0.1.7's flow fails on finalize=False (its mask keeps the held-back frames),
        # so the lookahead frames are held back here instead
        ratio = flow_frames_per_token(self.s3gen)
        if self.context_tokens is None or self.mels_done == 0:  # over the whole prompt and all tokens
            start, reference, made_from = 0, self.ref_dict, self.shift
        else:  # from the first token whose mels are not all made, continuing the rolling context
            start = (self.mels_done + self.shift) // ratio
            reference, made_from = self._rolling_reference(start), start * ratio  # (the speech's frame of mels[0])
        tokens = self.tokens[start:]
        if finished:  # the meanflow decoder's last chunk ends in silence tokens, as `tokens_to_wav` feeds it
            tokens = with_silence_tail(self.s3gen, tokens)
        tail = (len(tokens) - len(self.tokens) + start) * SAMPLES_PER_TOKEN  # the silence's samples, cut below
        mels = flow_mels(self.flow, tokens, reference, self.cfm_steps).to(self.s3gen.dtype)
        ready = made_from + mels.shape[2] - (0 if finished else lookahead * ratio)  # the speech's frames made for good
        new = mels[:, :, self.mels_done + self.shift - made_from: ready - made_from]
        self.mels_done = ready - self.shift
        if self.context_tokens is not None:
            self.finished = torch.cat([self.finished, new[0].T.float()])
        if self.cache is None:
            source = torch.zeros(1, 1, 0, device=new.device, dtype=new.dtype)
        else:
            new, source = torch.cat([self.cache[0], new], dim=2), self.cache[1]
        wav, source = hift_inference(self.s3gen, new, source)
        first = self.cache is None
        if not first:  # the overlap, made again: fade from the held-back tail into it
            wav[:, : self.overlap] = wav[:, : self.overlap] * self.fade_in + self.cache[2] * self.fade_out
        if not finished:
            self.cache = (new[:, :, -MEL_OVERLAP:], source[:, :, -self.overlap:], wav[:, -self.overlap:].clone())
            wav = wav[:, : -self.overlap]
        if first:
            fade_in(self.s3gen, wav)
        if tail:
            wav = wav[:, : max(0, wav.shape[1] - tail)]
        if finished and self.drop_last_token:  # the whole utterance ends where `tokens_to_wav` ends it
            wav = wav[:, : max(0, wav.shape[1] - (SAMPLES_PER_TOKEN if len(self.tokens) > 1 else 0))]
        return wav.squeeze(0).float().cpu().numpy()

    def _rolling_reference(self, start: int) -> dict:
        """The flow's reference for the tokens from `start` on: the last `context_tokens` of the reference prompt
        and the speech before `start`, with their mel frames (the reference's, then the ones made), two a token."""
        ref_tokens, ref_mels = self.ref_dict["prompt_token"][0], self.ref_dict["prompt_feat"][0]
        tokens = torch.cat([ref_tokens.to(self.tokens.device), self.tokens[:start]])[-self.context_tokens:]
        mels = torch.cat([ref_mels.float(), self.finished])[: 2 * len(ref_tokens) + 2 * start]
        return with_prompt(self.ref_dict, tokens.unsqueeze(0), mels[-2 * len(tokens):].unsqueeze(0).to(ref_mels.dtype))
