"""Fixed, seeded probe inputs and the outputs a model gives on them (T3 speech logits, S3Gen's flow mel): what a
merge must preserve and what a reduced precision is compared on."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..constants import SPEECH_VOCAB_SIZE

logger = logging.getLogger(__name__)


def probe_inputs(t3, seed: int = 0) -> dict[str, Any]:
    """A fixed conditioning prefix, text and speech sequence to compare T3 outputs on."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    hp = t3.hp
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, hp.text_tokens_dict_size - 1, (1, 24), generator=g)
    text[:, 0], text[:, -1] = hp.start_text_token, hp.stop_text_token
    speech = torch.randint(0, SPEECH_VOCAB_SIZE, (1, 40), generator=g)
    speech[:, 0], speech[:, -1] = hp.start_speech_token, hp.stop_speech_token
    emb = torch.randn(1, hp.speaker_embed_size, generator=g)
    cond = T3Cond(speaker_emb=emb / emb.norm(), emotion_adv=0.5 * torch.ones(1, 1, 1),
                  cond_prompt_speech_tokens=torch.randint(0, SPEECH_VOCAB_SIZE, (1, hp.speech_cond_prompt_len or 1),
                                                          generator=g))
    return dict(t3_cond=cond, text_tokens=text, text_token_lens=torch.tensor([text.shape[1]]), speech_tokens=speech,
                speech_token_lens=torch.tensor([speech.shape[1]]))


@torch.inference_mode()
def probe_outputs(tts) -> dict[str, torch.Tensor]:
    """T3 speech logits and S3Gen's flow output (mel) on fixed probe inputs: what a merge must preserve."""
    t3 = tts.t3
    inputs = probe_inputs(t3)
    out = {"t3": t3(**inputs).speech_logits.float()}
    g = torch.Generator().manual_seed(1)
    flow = tts.s3gen.flow
    tokens = torch.randint(0, SPEECH_VOCAB_SIZE, (1, 30), generator=g)
    prompt = torch.randint(0, SPEECH_VOCAB_SIZE, (1, 10), generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the CFM starts from torch.randn_like noise
        mel, _ = flow.inference(token=tokens, token_len=torch.tensor([30]), prompt_token=prompt,
                                prompt_token_len=torch.tensor([10]), prompt_feat=torch.randn(1, 20, 80, generator=g),
                                prompt_feat_len=None, embedding=torch.randn(1, 192, generator=g), finalize=True)
    out["s3gen"] = mel.float()
    return out


def compare_outputs(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per model: the largest absolute difference relative to the largest reference magnitude."""
    return {name: float((reference[name] - other[name]).abs().max() / reference[name].abs().max().clamp_min(1e-12))
            for name in reference}

