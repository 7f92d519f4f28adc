"""Synthesis with the upstream modules: T3 decoding with a KV cache and CFG, then S3Gen and the watermark.

`decode_speech_tokens` follows upstream `T3.inference` step for step (CFG as one batch of two, then repetition
penalty, temperature, min-p, top-p, sampling) but works for any depth of T3 (upstream's multilingual path hooks
layers 9-13 for its alignment heuristic) and can stop early at a token budget.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

SPEECH_VOCAB_SIZE = 6561  # S3 tokens; ids at or above are T3's special tokens


@torch.inference_mode()
def decode_speech_tokens(t3, t3_cond, text_tokens: torch.Tensor, max_new_tokens: int = 1000,
                         temperature: float = 0.8, cfg_weight: float = 0.5, repetition_penalty: float = 2.0,
                         min_p: float = 0.05, top_p: float = 1.0, generator: torch.Generator | None = None
                         ) -> torch.Tensor:
    """Speech tokens (1-D, without start/stop) for one utterance. `text_tokens`: (1, L) with start/stop tokens."""
    from transformers import DynamicCache
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TopPLogitsWarper,
    )

    hp = t3.hp
    device = t3.device
    text_tokens = text_tokens.to(device=device, dtype=torch.long).expand(2, -1)  # row 1: CFG's unconditional
    bos = torch.full((2, 1), hp.start_speech_token, dtype=torch.long, device=device)
    embeds, _ = t3.prepare_input_embeds(t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=bos,
                                        cfg_weight=cfg_weight)
    # Upstream appends the start token once more after the prefix (which already ends with it); so do we, so that
    # the same weights give the same tokens.
    embeds = torch.cat([embeds, t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)], dim=1)
    processors = [RepetitionPenaltyLogitsProcessor(penalty=float(repetition_penalty))]
    warpers = [MinPLogitsWarper(min_p=min_p), TopPLogitsWarper(top_p=top_p)]
    generated = bos[:1]
    cache = DynamicCache()
    out = t3.tfmr(inputs_embeds=embeds, past_key_values=cache, use_cache=True, return_dict=True)
    tokens = []
    for step in range(max_new_tokens):
        logits = t3.speech_head(out.last_hidden_state[:, -1])
        logits = logits[0:1] + cfg_weight * (logits[0:1] - logits[1:2])
        for processor in processors:
            logits = processor(generated, logits)
        if temperature != 1.0:
            logits = logits / temperature
        for warper in warpers:
            logits = warper(generated, logits)
        next_token = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        generated = torch.cat([generated, next_token], dim=1)
        if int(next_token) == hp.stop_speech_token:
            break
        tokens.append(int(next_token))
        embed = t3.speech_emb(next_token) + t3.speech_pos_emb.get_fixed_embedding(step + 1)
        out = t3.tfmr(inputs_embeds=embed.expand(2, -1, -1), past_key_values=out.past_key_values, use_cache=True,
                      return_dict=True)
    return torch.tensor(tokens, dtype=torch.long, device=device)


@torch.inference_mode()
def tokens_to_wav(s3gen, speech_tokens: torch.Tensor, ref_dict: dict, watermark: bool = True,
                  sample_rate: int = 24_000) -> np.ndarray:
    """S3Gen (flow + HiFT) on valid speech tokens, then Resemble's Perth watermark (kept in all the project ships)."""
    speech_tokens = speech_tokens[speech_tokens < SPEECH_VOCAB_SIZE]
    if speech_tokens.numel() == 0:
        return np.zeros(0, dtype=np.float32)
    wav, _ = s3gen.inference(speech_tokens=speech_tokens.to(s3gen.device), ref_dict=ref_dict)
    wav = wav.squeeze(0).detach().cpu().numpy()
    if watermark:
        wav = _watermarker().apply_watermark(wav, sample_rate=sample_rate)
    return wav.astype(np.float32)


@functools.lru_cache(maxsize=1)
def _watermarker():
    import perth

    return perth.PerthImplicitWatermarker()


def default_max_new_tokens(text: str) -> int:
    """A token budget for one sentence: generous for slow speech (8 characters/s at 25 tokens/s, plus 2 s), capped
    at upstream's 1000. A trained T3 stops by itself well before; an untrained one would run to the cap."""
    return max(50, min(1000, int(25 * (len(text) / 8 + 2))))


class Synthesizer:
    """A base checkpoint with optional adapters, and `synthesize(text, reference)` through the project's decoder.

    Conditioning comes from upstream `prepare_conditionals` (VoiceEncoder embedding, 6 s of prompt tokens, S3Gen
    reference), so a voice is cloned exactly as upstream clones it.
    """

    def __init__(self, tts, language: str = "es", accent: str | None = None):
        self.tts = tts
        self.language = language
        self.accent = accent
        self.sr = tts.sr

    @classmethod
    def from_checkpoint(cls, name_or_path: str, device: str = "cpu", base_model: str | None = None) -> "Synthesizer":
        """An adapter folder (its adapter.json names the base, or pass `base_model`), or a model checkpoint
        (local folder or Hub repo id)."""
        from .lora import ADAPTER_METADATA, S3GEN_DIR, T3_DIR, apply_adapters, is_adapter_dir, read_adapter_metadata
        from .modeling import load_chatterbox

        if not Path(name_or_path).exists() and name_or_path.count("/") == 1:  # a Hub repo: an adapter one?
            from huggingface_hub import snapshot_download
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

            try:
                local = snapshot_download(name_or_path, allow_patterns=[ADAPTER_METADATA, f"{T3_DIR}/*",
                                                                        f"{S3GEN_DIR}/*"])
                if is_adapter_dir(local):
                    name_or_path = local
            except (HfHubHTTPError, LocalEntryNotFoundError):
                pass  # load_chatterbox below says what is missing
        if is_adapter_dir(name_or_path):
            metadata = read_adapter_metadata(name_or_path)
            base = base_model or metadata.get("base_model")
            if not base:
                raise ValueError(f"{name_or_path} is an adapter without adapter.json: pass the base model it was "
                                 "trained on (--base_model).")
            tts = apply_adapters(load_chatterbox(base, device), name_or_path)
            return cls(tts, metadata.get("language") or "es", metadata.get("accent"))
        return cls(load_chatterbox(name_or_path, device))

    def conditionals(self, reference: np.ndarray, reference_sr: int, exaggeration: float = 0.5):
        import os
        import tempfile

        import soundfile as sf

        handle, path = tempfile.mkstemp(suffix=".wav")
        os.close(handle)
        try:
            sf.write(path, np.asarray(reference, dtype=np.float32), reference_sr)
            self.tts.prepare_conditionals(path, exaggeration=exaggeration)
        finally:
            os.unlink(path)
        return self.tts.conds

    def synthesize(self, text: str, reference: np.ndarray, reference_sr: int, exaggeration: float = 0.5,
                   cfg_weight: float = 0.5, temperature: float = 0.8, seed: int | None = 0,
                   max_new_tokens: int | None = None) -> np.ndarray:
        """24 kHz watermarked speech of `text` in the voice of `reference`."""
        import torch.nn.functional as F

        from .text import encode_text, text_for_model

        conds = self.conditionals(reference, reference_sr, exaggeration)
        t3 = self.tts.t3
        ids = encode_text(self.tts.tokenizer, text_for_model(text, accent=self.accent), self.language)
        tokens = F.pad(torch.tensor([ids]), (1, 0), value=t3.hp.start_text_token)
        tokens = F.pad(tokens, (0, 1), value=t3.hp.stop_text_token)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=t3.device).manual_seed(seed)
        speech = decode_speech_tokens(t3, conds.t3, tokens, max_new_tokens or default_max_new_tokens(text),
                                      temperature=temperature, cfg_weight=cfg_weight, generator=generator)
        return tokens_to_wav(self.tts.s3gen, speech, conds.gen, sample_rate=self.sr)
