"""Training teaches what inference runs: the loss module's predictions are, position for position, the ones upstream's
decoding makes (both start-of-speech tokens, the unconditional CFG row, whole prompts, fp32 residual stream), and
the collator draws each row's prompt from the speaker's other clips, anew each epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_LLAMA

from chatterbox_latam.data.collator import ChatterboxCollator, PromptPool
from chatterbox_latam.models.loading import build_t3
from chatterbox_latam.synthesis.decoding import prefix_embeds
from chatterbox_latam.training.model import ChatterboxForTraining


@pytest.fixture(scope="module")
def t3():
    torch.manual_seed(0)
    return build_t3(TINY_LLAMA).eval()


def _row(t3, seed: int, text_len: int, speech_len: int, prompt_len: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(256, generator=g)
    return {"id": f"clip{seed}", "speaker_id": "s",
            "text_tokens": torch.randint(1, 600, (text_len,), generator=g).tolist(),
            "speech_tokens": torch.randint(0, 6561, (speech_len,), generator=g).tolist(),
            "prompt_speech_tokens": torch.randint(0, 6561, (prompt_len,), generator=g).tolist(),
            "prompt_speaker_emb": (emb / emb.norm()).tolist()}


def _collator(t3, **kwargs) -> ChatterboxCollator:
    hp = t3.hp
    return ChatterboxCollator(hp.start_text_token, hp.stop_text_token, hp.start_speech_token, hp.stop_speech_token,
                              **kwargs)


@torch.no_grad()
def _inference_loss(t3, row: dict, uncond: bool = False) -> torch.Tensor:
    """Cross-entropy of the speech tokens (and the stop token) under the logits upstream's decoding computes at each
    step: the CFG pair's prefix from `prefix_embeds` (conditioning, text, the start token twice), then each fed
    token at speech position 1, 2, ... Row 0 is the conditional branch, row 1 the unconditional one."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    hp = t3.hp
    cond = T3Cond(speaker_emb=torch.tensor([row["prompt_speaker_emb"]]),
                  cond_prompt_speech_tokens=torch.tensor([row["prompt_speech_tokens"]]),
                  emotion_adv=0.5 * torch.ones(1, 1, 1))
    text = torch.tensor([[hp.start_text_token, *row["text_tokens"], hp.stop_text_token]])
    prefix, _ = prefix_embeds(t3, cond, text.expand(2, -1), cfg_weight=0.5)
    fed = torch.tensor([row["speech_tokens"]])
    steps = t3.speech_emb(fed) + t3.speech_pos_emb.get_fixed_embedding(torch.arange(1, fed.shape[1] + 1))
    embeds = torch.cat([prefix, steps.expand(2, -1, -1)], dim=1)
    hidden = t3.tfmr(inputs_embeds=embeds, use_cache=False).last_hidden_state[int(uncond)]
    logits = t3.speech_head(hidden[prefix.shape[1] - 1:])
    targets = torch.tensor([*row["speech_tokens"], hp.stop_speech_token])
    return F.cross_entropy(logits.float(), targets)


@torch.no_grad()
def _training_loss(t3, rows: list[dict], **collator) -> tuple[torch.Tensor, int]:
    batch = _collator(t3, **collator)(rows)
    batch.pop("ids", None)
    _, loss, count = ChatterboxForTraining(t3, None).t3_losses(
        batch["text_tokens"], batch["text_token_lens"], batch["speech_tokens"], batch["speech_token_lens"],
        batch["speech_loss_lens"], batch.get("text_uncond"), prompt_speech_tokens=batch["prompt_speech_tokens"],
        prompt_speech_lens=batch["prompt_speech_lens"], speaker_emb=batch["speaker_emb"],
        emotion_adv=batch["emotion_adv"])
    return loss, count


def test_training_predicts_what_inference_decodes(t3):
    """The sequence inference feeds (start-of-speech twice, both at speech position 0): each training position's
    prediction is the one upstream's decoding makes at that step."""
    row = _row(t3, 1, text_len=12, speech_len=30, prompt_len=150)
    loss, count = _training_loss(t3, [row])
    assert count == 31  # every speech token and the stop token
    assert loss.item() == pytest.approx(_inference_loss(t3, row).item(), rel=1e-5)


def test_each_prompt_is_kept_whole_in_a_batch(t3):
    """Rows with 150- and 40-token prompts batched together: each row's loss is what it is alone (inference gives
    whole prompts), not with its prompt cut to the batch's shortest."""
    long, short = _row(t3, 2, 10, 25, 150), _row(t3, 3, 14, 18, 40)
    together, count = _training_loss(t3, [long, short])
    alone = [_inference_loss(t3, row).item() for row in (long, short)]
    expected = (26 * alone[0] + 19 * alone[1]) / 45
    assert count == 45 and together.item() == pytest.approx(expected, rel=1e-5)


def test_unconditional_rows_are_cfgs_unconditional_branch(t3):
    """A row marked unconditional predicts what inference's unconditional CFG row predicts (text embeddings zeroed,
    positions kept), and carries no text loss."""
    row = _row(t3, 4, 12, 20, 150)
    loss, _ = _training_loss(t3, [row], prompts=PromptPool({}, {row["id"]}), uncond_fraction=0.999)
    assert loss.item() == pytest.approx(_inference_loss(t3, row, uncond=True).item(), rel=1e-5)
    assert loss.item() != pytest.approx(_inference_loss(t3, row).item(), rel=1e-3)
    batch = _collator(t3, prompts=PromptPool({}, {row["id"]}), uncond_fraction=0.999)([row])
    text_loss, _, _ = ChatterboxForTraining(t3, None).t3_losses(
        batch["text_tokens"], batch["text_token_lens"], batch["speech_tokens"], batch["speech_token_lens"],
        batch["speech_loss_lens"], batch["text_uncond"], prompt_speech_tokens=batch["prompt_speech_tokens"],
        prompt_speech_lens=batch["prompt_speech_lens"], speaker_emb=batch["speaker_emb"],
        emotion_adv=batch["emotion_adv"])
    assert text_loss.item() == 0.0


def test_uncond_fraction_marks_that_share_of_training_rows_only(t3):
    rows = [_row(t3, 100 + i, 5, 5, 10) for i in range(400)]
    pool = PromptPool({}, {r["id"] for r in rows[:300]})
    marked = _collator(t3, prompts=pool, uncond_fraction=0.1)(rows)["text_uncond"]
    assert 15 <= int(marked[:300].sum()) <= 50  # ~10% of the training rows
    assert not marked[300:].any()  # rows outside the training pool (validation) never
    again = _collator(t3, prompts=pool, uncond_fraction=0.1)(rows)["text_uncond"]
    assert torch.equal(marked, again)  # seeded by (seed, epoch, row)


def test_residual_stream_stays_fp32_under_bf16_autocast(t3):
    """Upstream concatenates fp32 embeddings with the conditioning: under bf16 autocast the packed input, and so
    the residual stream, stays fp32."""
    seen = []
    hook = t3.tfmr.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"].dtype),
                                             with_kwargs=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _training_loss(t3, [_row(t3, 5, 8, 10, 60)])
    finally:
        hook.remove()
    assert seen == [torch.float32]


def test_prompt_is_drawn_anew_each_epoch_from_the_speakers_references_without_the_row(t3):
    clips = [_row(t3, 10 + i, 5, 5, 20 + i) for i in range(6)]
    # three references of two clips each, as preparation joins a speaker's short clips
    lone = {**_row(t3, 30, 5, 5, 33), "speaker_id": "t", "prompt_source": "other"}  # its only reference holds it
    pool = PromptPool({"s": [((clips[i]["id"], clips[i + 1]["id"]), clips[i]["prompt_speech_tokens"],
                              clips[i]["prompt_speaker_emb"]) for i in (0, 2, 4)],
                       "t": [((lone["id"],), [1] * 150, lone["prompt_speaker_emb"])]}, {c["id"] for c in clips + [lone]})
    rows = [{**c, "prompt_source": "other"} for c in clips]
    collator = _collator(t3, prompts=pool)
    by_epoch = []
    for epoch in range(4):
        collator.epoch = epoch
        batch = collator(rows)
        lengths = batch["prompt_speech_lens"].tolist()
        by_epoch.append(lengths)
        for i, length in enumerate(lengths):
            assert length in (20, 22, 24) and length != 20 + 2 * (i // 2)  # never the reference that holds the row
        assert batch["prompt_speech_lens"].tolist() == collator(rows)["prompt_speech_lens"].tolist()  # seeded
    assert len({tuple(lengths) for lengths in by_epoch}) > 1  # the draw changes between epochs
    assert collator([lone])["prompt_speech_lens"].tolist() == [33]  # no reference without it: its prepared prompt


def test_frozen_modules_stay_in_eval_mode_whatever_the_trainer_asks(tiny_checkpoint):
    """The Trainer calls `train()` every step: frozen modules (T3's perceiver with its attention dropout of 0.2, the
    dropout layers of the adapted blocks, S3Gen's frozen parts) stay as inference runs them, so two passes give the
    same conditioning; only LoRA's dropout is active. The module walk does catch an active one."""
    from chatterbox_latam.models.config import ModelConfig
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import load_s3gen, load_t3
    from chatterbox_latam.models.lora import add_s3gen_lora, add_t3_lora
    from chatterbox_latam.training.model import active_dropout

    checkpoint = resolve_checkpoint(tiny_checkpoint)
    config = ModelConfig(base_model=str(tiny_checkpoint), train_s3gen=True, lora_dropout=0.1)
    flow = load_s3gen(checkpoint).flow
    flow.requires_grad_(False)
    model = ChatterboxForTraining(add_t3_lora(load_t3(checkpoint), config), add_s3gen_lora(flow, config)).train()
    assert active_dropout(model) == []
    lora_dropout = [m for name, m in model.named_modules() if name.endswith("lora_dropout.default")]
    assert lora_dropout and all(m.training and m.p == 0.1 for m in lora_dropout)
    row = _row(model.t3, 7, 8, 10, 150)
    args = (torch.tensor([row["prompt_speech_tokens"]]), None, torch.tensor([row["prompt_speaker_emb"]]),
            torch.full((1, 1, 1), 0.5))
    with torch.no_grad():
        assert torch.equal(model.conditioning(*args), model.conditioning(*args))

    torch.nn.Module.train(model)  # what the Trainer's call did before: every module in train mode
    walked = active_dropout(model)
    assert any("perceiver" in name for name in walked) and any(name.startswith("flow.") for name in walked)
    with torch.no_grad():
        assert not torch.equal(model.conditioning(*args), model.conditioning(*args))


def test_training_samples_get_the_token_budget_their_text_gets_at_inference(tiny_checkpoint):
    """The audio-sample callback decodes a validation sentence with the budget inference gives its text
    (`default_max_new_tokens`), not one from the recording's length: the untrained tiny T3 never stops, so it runs
    to exactly that budget."""
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import load_s3gen, load_t3
    from chatterbox_latam.synthesis.tts import default_max_new_tokens
    from chatterbox_latam.training.run import _synthesizer

    checkpoint = resolve_checkpoint(tiny_checkpoint)
    t3 = load_t3(checkpoint)
    with torch.no_grad():  # speech tokens far likelier than any special id: it never stops
        t3.speech_head.weight[6561:] = 0
        t3.speech_head.weight[:6561] *= 100
    text = "Buenos días, ¿cómo está usted? Hoy hace un día precioso en la ciudad."
    row = _row(t3, 11, 0, 0, 150)
    sample = {"text": text, "text_tokens": [705, *range(10, 40)], "prompt_speech_tokens": row["prompt_speech_tokens"],
              "prompt_speaker_emb": row["prompt_speaker_emb"], "accent": "mx",
              "reference": (0.1 * np.sin(np.arange(72_000) / 9)).astype(np.float32), "reference_sr": 24_000}
    wav = _synthesizer(load_s3gen(checkpoint), checkpoint.generation)(ChatterboxForTraining(t3, None), sample)
    assert len(wav) == default_max_new_tokens(text) * 960
