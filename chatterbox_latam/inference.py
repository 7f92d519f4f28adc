"""Synthesis with the upstream modules: T3 decoding with a KV cache and CFG, then S3Gen and the watermark.

`decode_speech_tokens` follows upstream `T3.inference` step for step (CFG as one batch of two, then repetition
penalty, temperature, min-p, top-p, sampling) but works for any depth of T3 (upstream's multilingual path hooks
layers 9-13 for its alignment heuristic) and can stop early at a token budget.
"""

from __future__ import annotations

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
        import perth

        wav = perth.PerthImplicitWatermarker().apply_watermark(wav, sample_rate=sample_rate)
    return wav.astype(np.float32)
