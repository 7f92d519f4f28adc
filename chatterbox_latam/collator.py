"""Batches of prepared features for T3 (and S3Gen) training.

Example with two clips (T3 start/stop ids from `T3Config`: text 255/0, speech 6561/6562):

    >>> collator = ChatterboxCollator(start_text=255, stop_text=0, start_speech=6561, stop_speech=6562)
    >>> batch = collator([
    ...     {"text_tokens": [705, 11, 12], "speech_tokens": [7, 8, 9], "prompt_speech_tokens": [1, 2, 3, 4],
    ...      "prompt_speaker_emb": [0.0] * 256},
    ...     {"text_tokens": [705, 13], "speech_tokens": [5], "prompt_speech_tokens": [6, 6, 6],
    ...      "prompt_speaker_emb": [0.0] * 256},
    ... ])
    >>> batch["text_tokens"].tolist()          # [START] + tokens + [STOP], right-padded with 0 (masked by the lens)
    [[255, 705, 11, 12, 0], [255, 705, 13, 0, 0]]
    >>> batch["text_token_lens"].tolist(), batch["speech_tokens"].tolist()
    ([5, 4], [[6561, 7, 8, 9, 6562], [6561, 5, 6562, 0, 0]])
    >>> batch["prompt_speech_tokens"].tolist()  # cut to the shortest prompt of the batch: no padding in the prompt
    [[1, 2, 3], [6, 6, 6]]

Padding positions are excluded through the `*_lens` tensors (the loss turns them into -100 labels). Prompts are
cut to the batch's shortest because T3's perceiver attends over every prompt position without a mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


def _pad(sequences: list[list[int]], value: int = 0) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in sequences], dtype=torch.long)


@dataclass
class ChatterboxCollator:
    """Pads text and speech tokens (adding T3's start/stop tokens) and stacks the conditioning."""

    start_text: int
    stop_text: int
    start_speech: int
    stop_speech: int
    with_s3gen: bool = False
    emotion_adv: float = 0.5

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        text = [[self.start_text, *r["text_tokens"], self.stop_text] for r in rows]
        speech = [[self.start_speech, *r["speech_tokens"], self.stop_speech] for r in rows]
        prompt_len = min(len(r["prompt_speech_tokens"]) for r in rows)
        batch = {
            "text_tokens": _pad(text),
            "text_token_lens": torch.tensor([len(t) for t in text]),
            "speech_tokens": _pad(speech),
            "speech_token_lens": torch.tensor([len(s) for s in speech]),
            "prompt_speech_tokens": torch.tensor([list(r["prompt_speech_tokens"][:prompt_len]) for r in rows]),
            "speaker_emb": torch.tensor([list(r["prompt_speaker_emb"]) for r in rows], dtype=torch.float32),
            "emotion_adv": torch.full((len(rows), 1, 1), self.emotion_adv),
        }
        if "id" in rows[0]:
            batch["ids"] = [r["id"] for r in rows]  # not a tensor: the trainer takes it out before the model
        if self.with_s3gen:
            feats = [torch.as_tensor(r["speech_feat"], dtype=torch.float32) for r in rows]
            frames = max(f.shape[0] for f in feats)
            batch["speech_feat"] = torch.stack(
                [torch.nn.functional.pad(f, (0, 0, 0, frames - f.shape[0])) for f in feats]
            ).transpose(1, 2)  # (B, 80, frames): what flow.compute_loss indexes
            batch["speech_feat_lens"] = torch.tensor([f.shape[0] for f in feats])
            batch["s3_tokens"] = _pad([r["speech_tokens"] for r in rows])
            batch["s3_token_lens"] = torch.tensor([len(r["speech_tokens"]) for r in rows])
            batch["xvector"] = torch.tensor([list(r["xvector"]) for r in rows], dtype=torch.float32)
        return batch
