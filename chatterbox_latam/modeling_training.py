"""The module the Trainer trains: T3 (LoRA on its Llama) and optionally S3Gen's flow, returning their losses.

T3's loss is written here because upstream's `T3.loss()` cannot train: it hands `(B, T, V)` logits to
`cross_entropy` (which wants `(B, V, T)`) and does not shift targets. Here each sequence is packed as
`[conditioning | text | speech]` with no gap (upstream's `forward` places every sample's speech after the
*padded* text, so short texts would see pad embeddings that never occur at inference), padding goes at the end
under an attention mask, and the loss is next-token cross-entropy on text and on speech, labels shifted by one
and -100 on padding. The reference prompt lives only in the conditioning prefix, never in the targets.

S3Gen's loss is upstream's flow-matching loss (`CausalMaskedDiffWithXvec.compute_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


class ChatterboxForTraining(nn.Module):
    """Holds the adapted models; `forward(**batch)` returns the weighted loss and each loss on its own."""

    def __init__(self, t3: nn.Module | None, flow: nn.Module | None, text_loss_weight: float = 0.01,
                 s3gen_loss_weight: float = 1.0):
        super().__init__()
        if t3 is None and flow is None:
            raise ValueError("Nothing to train: pass T3, S3Gen's flow, or both.")
        self.t3 = t3
        self.flow = flow
        self.text_loss_weight = text_loss_weight
        self.s3gen_loss_weight = s3gen_loss_weight

    def t3_hidden(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, prompt_speech_tokens,
                  speaker_emb, emotion_adv):
        """Backbone output for packed `[cond | text | speech]` sequences and each part's offset."""
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        t3 = self.t3
        # A fresh T3Cond per batch: prepare_conditioning caches the prompt embedding on the object.
        cond = T3Cond(speaker_emb=speaker_emb, cond_prompt_speech_tokens=prompt_speech_tokens, emotion_adv=emotion_adv)
        cond_emb = t3.prepare_conditioning(cond)  # (B, Lc, D)
        text_emb = t3.text_emb(text_tokens) + t3.text_pos_emb(text_tokens)
        speech_emb = t3.speech_emb(speech_tokens) + t3.speech_pos_emb(speech_tokens)
        batch, len_cond, dim = cond_emb.shape
        total = len_cond + text_token_lens + speech_token_lens
        length = int(total.max())
        embeds = cond_emb.new_zeros(batch, length, dim)
        for i in range(batch):
            lt, ls = int(text_token_lens[i]), int(speech_token_lens[i])
            embeds[i, :len_cond] = cond_emb[i]
            embeds[i, len_cond : len_cond + lt] = text_emb[i, :lt]
            embeds[i, len_cond + lt : len_cond + lt + ls] = speech_emb[i, :ls]
        mask = torch.arange(length, device=embeds.device)[None] < total[:, None]
        out = t3.tfmr(inputs_embeds=embeds, attention_mask=mask.long(), use_cache=False, return_dict=True)
        return out.last_hidden_state, len_cond

    @staticmethod
    def _gather(hidden: torch.Tensor, start: torch.Tensor, width: int) -> torch.Tensor:
        index = (start[:, None] + torch.arange(width, device=hidden.device)[None]).clamp(max=hidden.shape[1] - 1)
        return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))

    @staticmethod
    def _shifted_ce(logits: torch.Tensor, tokens: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Position j predicts token j+1; positions whose target is padding get -100."""
        targets = tokens[:, 1:].clone()
        targets[torch.arange(targets.shape[1], device=tokens.device)[None] >= (lens[:, None] - 1)] = IGNORE_INDEX
        loss = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX)
        return loss, int((targets != IGNORE_INDEX).sum())

    def t3_losses(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, **conditioning):
        hidden, len_cond = self.t3_hidden(text_tokens, text_token_lens, speech_tokens, speech_token_lens,
                                          **conditioning)
        batch = hidden.shape[0]
        text_start = torch.full((batch,), len_cond, device=hidden.device)
        text_hidden = self._gather(hidden, text_start, text_tokens.shape[1])
        speech_hidden = self._gather(hidden, text_start + text_token_lens, speech_tokens.shape[1])
        loss_text, _ = self._shifted_ce(self.t3.text_head(text_hidden), text_tokens, text_token_lens)
        loss_speech, n_speech = self._shifted_ce(self.t3.speech_head(speech_hidden), speech_tokens, speech_token_lens)
        return loss_text, loss_speech, n_speech

    def s3gen_loss(self, s3_tokens, s3_token_lens, speech_feat, speech_feat_lens, xvector):
        batch = {"speech_token": s3_tokens, "speech_token_len": s3_token_lens, "speech_feat": speech_feat,
                 "speech_feat_len": speech_feat_lens, "embedding": xvector}
        return self.flow.compute_loss(batch, s3_tokens.device)["loss"]

    def forward(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, prompt_speech_tokens,
                speaker_emb, emotion_adv, speech_feat=None, speech_feat_lens=None, s3_tokens=None,
                s3_token_lens=None, xvector=None):
        losses: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=speaker_emb.device)
        if self.t3 is not None:
            loss_text, loss_speech, n_speech = self.t3_losses(
                text_tokens, text_token_lens, speech_tokens, speech_token_lens,
                prompt_speech_tokens=prompt_speech_tokens, speaker_emb=speaker_emb, emotion_adv=emotion_adv,
            )
            loss = loss + self.text_loss_weight * loss_text + loss_speech
            losses.update(loss_text=loss_text, loss_speech=loss_speech)
            losses["speech_tokens"] = torch.tensor(float(n_speech), device=loss.device)
        if self.flow is not None:
            if speech_feat is None:
                raise ValueError("S3Gen training needs speech_feat and xvector: prepare the data with train_s3gen: true.")
            loss_s3gen = self.s3gen_loss(s3_tokens, s3_token_lens, speech_feat, speech_feat_lens, xvector)
            loss = loss + self.s3gen_loss_weight * loss_s3gen
            losses["loss_s3gen"] = loss_s3gen
        return {"loss": loss, **losses}
