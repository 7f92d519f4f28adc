"""The module the Trainer trains: T3 (LoRA on its Llama) and optionally S3Gen's flow, returning their losses.

T3's loss is written here because upstream's `T3.loss()` cannot train: it hands `(B, T, V)` logits to
`cross_entropy` (which wants `(B, V, T)`) and does not shift targets. Each sequence is what upstream's inference
feeds T3, packed with no gap (upstream's `forward` places every sample's speech after the *padded* text, so short
texts would see pad embeddings that never occur at inference):

    [conditioning | text | start-of-speech, start-of-speech, speech tokens..., stop]

The start-of-speech token comes twice, both at speech position 0, as upstream's `T3.inference` feeds it (its
prefix ends with one and it appends another); the second one predicts the first speech token. Padding goes at the
end under an attention mask, and the loss is next-token cross-entropy on text and on speech, labels shifted by one
and -100 on padding. The reference prompt lives only in the conditioning prefix, never in the targets. The packed
buffer has the dtype upstream's concatenation gives (fp32 under bf16 autocast: the embeddings are fp32), so the
residual stream runs at the precision inference runs it.

Rows marked `text_uncond` are CFG's unconditional branch as inference builds it (`prepare_input_embeds` zeroes
the text token embeddings and keeps their position embeddings); their text loss is masked.

Frozen modules never train in train mode: `train()` keeps every submodule without trainable parameters (T3's
conditioning encoder with its perceiver's attention dropout of 0.2, S3Gen's tokenizer, CAMPPlus, the dropout layers
of the adapted blocks) in eval mode, as inference runs them, so the conditioning prefix a row gets is the one
inference computes; only LoRA's own dropout is active (`active_dropout` lists any other).

S3Gen's loss is upstream's flow-matching loss (`CausalMaskedDiffWithXvec.compute_loss`), CosyVoice's recipe, which is
how the base S3Gen was trained: each row is conditioned on its own clip's x-vector and, at random, on a prefix of
its own mel as the prompt the flow continues (inside `compute_loss`), and the CFM drops the conditions at its
training rate. At inference the x-vector and the prompt come from the reference and the speech continues it: the
same relation. That is the recipe, not a leak: do not replace the clip's own features with another clip's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..compat import is_dropout_layer

IGNORE_INDEX = -100


def active_dropout(module: nn.Module) -> list[str]:
    """Names of the submodules that would drop activations in the module's current mode, other than LoRA's own
    dropout: dropout layers with p > 0 and modules whose attention reads a dropout rate while training (upstream's
    perceiver, Llama's attention). Empty when only LoRA's dropout is active."""
    found = []
    for name, child in module.named_modules():
        if not child.training or "lora_dropout" in name:
            continue
        rate = child.p if is_dropout_layer(child) else max(
            (float(getattr(child, attr)) for attr in ("dropout_rate", "attention_dropout")
             if isinstance(getattr(child, attr, None), (int, float))), default=0.0)
        if rate > 0:
            found.append(name)
    return found


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

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict | None = None,
                                        every_n_layers: int = 1, offload: bool = False) -> None:
        """What the Trainer calls for `activation_checkpointing` / `gradient_checkpointing`: T3's Llama recomputes
        its layers' activations in the backward pass (with its kwargs, e.g. `use_reentrant`), trading compute for
        memory. The LoRA weights inside keep their gradients: the non-reentrant default needs no input that
        requires grad, and with `use_reentrant: true` `t3_hidden` makes the packed `inputs_embeds` require one."""
        if self.t3 is None:
            raise ValueError("activation checkpointing applies to T3's backbone, and T3 is not trained here.")
        self.t3.tfmr.activation_checkpointing_enable(activation_checkpointing_kwargs=activation_checkpointing_kwargs,
                                                     every_n_layers=every_n_layers, offload=offload)

    def train(self, mode: bool = True) -> "ChatterboxForTraining":
        """Train mode for what trains: every submodule without trainable parameters (and so every dropout layer but
        LoRA's) stays in eval mode, as inference runs it, whatever the Trainer asks (it calls this every step)."""
        super().train(mode)
        if mode:
            trainable = {""}
            for name, parameter in self.named_parameters():
                if parameter.requires_grad:
                    parts = name.split(".")
                    trainable.update(".".join(parts[:i]) for i in range(1, len(parts)))
            for name, child in self.named_modules():
                if name not in trainable and "lora_dropout" not in name:
                    child.training = False
        return self

    def conditioning(self, prompt_speech_tokens, prompt_speech_lens, speaker_emb, emotion_adv) -> torch.Tensor:
        """T3's conditioning prefix per row, each prompt whole: rows are grouped by prompt length and each group
        goes through upstream's `prepare_conditioning` (the perceiver has no mask, and gives the same number of
        positions for any prompt length)."""
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        if prompt_speech_lens is None:
            prompt_speech_lens = torch.full((prompt_speech_tokens.shape[0],), prompt_speech_tokens.shape[1],
                                            device=prompt_speech_tokens.device)
        parts, order = [], []
        for length in sorted(set(prompt_speech_lens.tolist())):
            rows = (prompt_speech_lens == length).nonzero().flatten()
            # A fresh T3Cond per call: prepare_conditioning caches the prompt embedding on the object.
            cond = T3Cond(speaker_emb=speaker_emb[rows], cond_prompt_speech_tokens=prompt_speech_tokens[rows, :length],
                          emotion_adv=emotion_adv[rows])
            parts.append(self.t3.prepare_conditioning(cond))
            order.append(rows)
        inverse = torch.empty_like(prompt_speech_lens)
        inverse[torch.cat(order)] = torch.arange(len(inverse), device=inverse.device)
        return torch.cat(parts)[inverse]

    def text_inputs(self, text_tokens, text_uncond=None) -> torch.Tensor:
        """Text embeddings with their positions; rows of CFG's unconditional branch get zeroed token embeddings and
        keep their positions, as upstream's `prepare_input_embeds` builds that row."""
        t3 = self.t3
        text_emb = t3.text_emb(text_tokens)
        if text_uncond is not None:
            text_emb = text_emb * (~text_uncond).to(text_emb.dtype)[:, None, None]
        return text_emb + t3.text_pos_emb(text_tokens)

    def speech_inputs(self, speech_tokens, speech_token_lens) -> tuple[torch.Tensor, torch.Tensor]:
        """Speech embeddings as inference feeds them, and their lengths: the start-of-speech token twice, both at
        speech position 0 (upstream's prefix ends with one and its loop appends another), then the tokens at 1, 2,
        ... (`speech_tokens` starts with the start token)."""
        t3 = self.t3
        speech_emb = t3.speech_emb(speech_tokens) + t3.speech_pos_emb(speech_tokens)
        return torch.cat([speech_emb[:, :1], speech_emb], dim=1), speech_token_lens + 1

    def t3_hidden(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, prompt_speech_tokens,
                  speaker_emb, emotion_adv, prompt_speech_lens=None, text_uncond=None):
        """Backbone output for packed `[cond | text | speech inputs]` sequences, the conditioning's length, and
        where the first hidden state predicting `speech_tokens[:, 1]` sits after the text."""
        t3 = self.t3
        cond_emb = self.conditioning(prompt_speech_tokens, prompt_speech_lens, speaker_emb, emotion_adv)
        text_emb = self.text_inputs(text_tokens, text_uncond)
        speech_emb, speech_lens = self.speech_inputs(speech_tokens, speech_token_lens)
        batch, len_cond, dim = cond_emb.shape
        total = len_cond + text_token_lens + speech_lens
        length = int(total.max())
        # Upstream concatenates the parts (`torch.cat`, which autocast runs in the widest dtype): fp32 embeddings
        # keep the buffer, and so the residual stream, fp32 under bf16 autocast.
        dtype = torch.promote_types(torch.promote_types(cond_emb.dtype, text_emb.dtype), speech_emb.dtype)
        embeds = torch.zeros(batch, length, dim, dtype=dtype, device=cond_emb.device)
        for i in range(batch):
            lt, ls = int(text_token_lens[i]), int(speech_lens[i])
            embeds[i, :len_cond] = cond_emb[i]
            embeds[i, len_cond : len_cond + lt] = text_emb[i, :lt]
            embeds[i, len_cond + lt : len_cond + lt + ls] = speech_emb[i, :ls]
        mask = torch.arange(length, device=embeds.device)[None] < total[:, None]
        if torch.is_grad_enabled() and not embeds.requires_grad and any(
                getattr(layer, "gradient_checkpointing", False) for layer in t3.tfmr.layers):
            # Reentrant checkpointing (use_reentrant: true) gives the LoRA weights inside a checkpointed layer a
            # gradient only through inputs that require one; transformers' remedy (`enable_input_require_grads`)
            # hooks the token embedding, which T3, fed `inputs_embeds`, never calls.
            embeds.requires_grad_(True)
        out = t3.tfmr(inputs_embeds=embeds, attention_mask=mask.long(), use_cache=False, return_dict=True)
        # the hidden state that predicts the first speech token: the last start token's
        return out.last_hidden_state, len_cond, speech_emb.shape[1] - speech_tokens.shape[1]

    @staticmethod
    def _gather(hidden: torch.Tensor, start: torch.Tensor, width: int) -> torch.Tensor:
        index = (start[:, None] + torch.arange(width, device=hidden.device)[None]).clamp(max=hidden.shape[1] - 1)
        return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))

    @staticmethod
    def _targets(tokens: torch.Tensor, supervised: torch.Tensor) -> torch.Tensor:
        """Position j predicts token j+1; the first `supervised` targets of each row carry the loss, the rest
        (padding, a masked tail) get -100."""
        targets = tokens[:, 1:].clone()
        targets[torch.arange(targets.shape[1], device=tokens.device)[None] >= supervised[:, None]] = IGNORE_INDEX
        return targets

    @classmethod
    def _shifted_ce(cls, logits: torch.Tensor, tokens: torch.Tensor,
                    supervised: torch.Tensor) -> tuple[torch.Tensor, int]:
        targets = cls._targets(tokens, supervised)
        count = int((targets != IGNORE_INDEX).sum())
        if count == 0:  # e.g. every row of the batch is an unconditional one: no text loss, but keep the graph
            return logits.sum() * 0.0, 0
        loss = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets, ignore_index=IGNORE_INDEX)
        return loss, count

    def t3_logits(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, text_uncond=None,
                  **conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """Text and speech logits at every position of the packed sequences: position j predicts token j+1."""
        hidden, len_cond, offset = self.t3_hidden(text_tokens, text_token_lens, speech_tokens, speech_token_lens,
                                                  text_uncond=text_uncond, **conditioning)
        text_start = torch.full((hidden.shape[0],), len_cond, device=hidden.device)
        text_hidden = self._gather(hidden, text_start, text_tokens.shape[1])
        # from the last start-of-speech token on (the first one's output is unused at inference too)
        speech_hidden = self._gather(hidden, text_start + text_token_lens + offset, speech_tokens.shape[1])
        return self.t3.text_head(text_hidden), self.t3.speech_head(speech_hidden)

    def speech_logprobs(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, speech_loss_lens=None,
                        text_uncond=None, **conditioning) -> torch.Tensor:
        """Log-probability of each target speech token (and the stop token), (B, T-1), NaN where no target is: what
        the speech loss averages, for checks against the inference path (`testing.check_real`)."""
        _, logits = self.t3_logits(text_tokens, text_token_lens, speech_tokens, speech_token_lens, text_uncond,
                                   **conditioning)
        if speech_loss_lens is None:
            speech_loss_lens = speech_token_lens - 1
        targets = self._targets(speech_tokens, speech_loss_lens)
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logprobs.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
        return picked.masked_fill(targets == IGNORE_INDEX, float("nan"))

    def t3_losses(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, speech_loss_lens=None,
                  text_uncond=None, **conditioning):
        text_logits, speech_logits = self.t3_logits(text_tokens, text_token_lens, speech_tokens, speech_token_lens,
                                                    text_uncond, **conditioning)
        text_supervised = text_token_lens - 1
        if text_uncond is not None:
            text_supervised = text_supervised.masked_fill(text_uncond, 0)
        if speech_loss_lens is None:
            speech_loss_lens = speech_token_lens - 1
        loss_text, _ = self._shifted_ce(text_logits, text_tokens, text_supervised)
        loss_speech, n_speech = self._shifted_ce(speech_logits, speech_tokens, speech_loss_lens)
        return loss_text, loss_speech, n_speech

    def s3gen_loss(self, s3_tokens, s3_token_lens, speech_feat, speech_feat_lens, xvector):
        batch = {"speech_token": s3_tokens, "speech_token_len": s3_token_lens, "speech_feat": speech_feat,
                 "speech_feat_len": speech_feat_lens, "embedding": xvector}
        return self.flow.compute_loss(batch, s3_tokens.device)["loss"]

    def forward(self, text_tokens, text_token_lens, speech_tokens, speech_token_lens, prompt_speech_tokens,
                speaker_emb, emotion_adv, prompt_speech_lens=None, speech_loss_lens=None, text_uncond=None,
                speech_feat=None, speech_feat_lens=None, s3_tokens=None, s3_token_lens=None, xvector=None):
        losses: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=speaker_emb.device)
        if self.t3 is not None:
            loss_text, loss_speech, n_speech = self.t3_losses(
                text_tokens, text_token_lens, speech_tokens, speech_token_lens, speech_loss_lens, text_uncond,
                prompt_speech_tokens=prompt_speech_tokens, prompt_speech_lens=prompt_speech_lens,
                speaker_emb=speaker_emb, emotion_adv=emotion_adv,
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

