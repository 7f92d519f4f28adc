"""Batches of prepared features for T3 (and S3Gen) training, with each row's prompt as inference gives it.

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
    >>> batch["prompt_speech_tokens"].tolist(), batch["prompt_speech_lens"].tolist()  # each prompt whole
    ([[1, 2, 3, 4], [6, 6, 6, 0]], [4, 3])
    >>> batch["speech_loss_lens"].tolist()      # targets with a loss: every token and the stop token
    [4, 2]

Padding positions are excluded through the `*_lens` tensors (the loss turns them into -100 labels). Prompts are
kept whole and padded: the training module runs T3's perceiver on each prompt length on its own (it has no mask,
and its output has the same length whatever the prompt's), so training sees prompts of the lengths inference
gives (150 tokens from a 6 s reference), never cut to the batch's shortest.

With a `PromptPool` (the training split's references, `data.references`), a training row's prompt is drawn anew each
epoch from its speaker's references that do not hold its own clip, and a `uncond_fraction` of training rows are
marked `text_uncond` (their text embeddings are zeroed, as in CFG's unconditional branch). Both draws are seeded by
(seed, epoch, row id), so they do not depend on batch order or process count and an exact resume holds.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch

from .references import SpeakerReferences


def _pad(sequences: list[list[int]], value: int = 0) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in sequences], dtype=torch.long)


@dataclass
class PromptPool:
    """The references a training row may take its prompt from, per speaker (the `reference_*` columns of the rows
    that head one: clip ids, prompt tokens, speaker embedding, as inference takes them from a reference), and the
    ids of the rows that draw from it."""

    by_speaker: dict[str, list[tuple[tuple[str, ...], list[int], list[float]]]] = field(default_factory=dict)
    rows: set[str] = field(default_factory=set)

    def __post_init__(self):
        # which reference holds each clip: a draw skips it in constant time (`references.SpeakerReferences`)
        self._held = {speaker: SpeakerReferences([ids for ids, _, _ in references])
                      for speaker, references in self.by_speaker.items()}

    @classmethod
    def from_split(cls, split) -> "PromptPool":
        pool: dict[str, list[tuple[tuple[str, ...], list[int], list[float]]]] = defaultdict(list)
        columns = split.select_columns(["id", "speaker_id", "reference_ids", "reference_speech_tokens",
                                        "reference_speaker_emb"])
        for row in columns:
            if row["reference_ids"]:
                pool[row["speaker_id"]].append((tuple(row["reference_ids"]), list(row["reference_speech_tokens"]),
                                                list(row["reference_speaker_emb"])))
        return cls(dict(pool), set(split["id"]))

    def draw(self, speaker: str, clip_id: str, rng: random.Random) -> tuple[list[int], list[float]] | None:
        """Prompt tokens and speaker embedding of one of the speaker's references that does not hold `clip_id`
        (None when there is none)."""
        held = self._held.get(speaker)
        index = held.draw_index(clip_id, rng) if held is not None else None
        if index is None:
            return None
        _, tokens, embedding = self.by_speaker[speaker][index]
        return tokens, embedding


@dataclass
class ChatterboxCollator:
    """Pads text and speech tokens (adding T3's start/stop tokens), pads prompts, stacks the conditioning.

    Called with a list of prepared rows, it returns a dict of tensors: `text_tokens`, `speech_tokens`,
    `prompt_speech_tokens` with their `*_lens`, `speech_loss_lens`, `speaker_emb`, `emotion_adv`, and with
    `with_s3gen` the mel, S3 tokens and x-vector S3Gen's flow loss takes (the module docstring has an example).

    Args:
        start_text: T3's start-of-text token id.
        stop_text: T3's end-of-text token id.
        start_speech: T3's start-of-speech token id.
        stop_speech: T3's end-of-speech token id.
        with_s3gen: Also batch S3Gen's features (`speech_feat`, `s3_tokens`, `xvector`).
        emotion_adv: The exaggeration every row is conditioned on (upstream's default 0.5).
        prompts: Training clips to draw prompts from each epoch; rows not in it (validation) keep their
            prepared prompt.
        uncond_fraction: Share of training rows shown as CFG's unconditional branch.
        seed: Seeds the prompt and unconditional draws, with the epoch and the row id.
        epoch: The epoch the draws are for (`PromptEpochCallback` sets it at each epoch's start).
    """

    start_text: int
    stop_text: int
    start_speech: int
    stop_speech: int
    with_s3gen: bool = False
    emotion_adv: float = 0.5
    prompts: PromptPool | None = None
    """Training clips to draw prompts from each epoch; rows not in it (validation) keep their prepared prompt."""
    uncond_fraction: float = 0.0
    """Share of training rows shown as CFG's unconditional branch (text embeddings zeroed, no text loss)."""
    seed: int = 42
    epoch: int = 0
    """Set by `PromptEpochCallback` at each epoch's start."""

    def __post_init__(self):
        self._train_ids = self.prompts.rows if self.prompts is not None else set()

    def _rng(self, row_id: str, what: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.epoch}:{row_id}:{what}")

    def _prompt(self, row: dict[str, Any]) -> tuple[list[int], list[float]]:
        """A training row's prompt drawn from its speaker's references without its clip; else the prepared one."""
        if row.get("id") in self._train_ids and row.get("prompt_source", "other") == "other":
            drawn = self.prompts.draw(row["speaker_id"], row["id"], self._rng(row["id"], "prompt"))
            if drawn is not None:
                return drawn
        return list(row["prompt_speech_tokens"]), list(row["prompt_speaker_emb"])

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        text = [[self.start_text, *r["text_tokens"], self.stop_text] for r in rows]
        speech = [[self.start_speech, *r["speech_tokens"], self.stop_speech] for r in rows]
        prompts = [self._prompt(r) for r in rows]
        if any(len(tokens) == 0 for tokens, _ in prompts):
            raise ValueError("A row without a prompt reached the collator: rows whose prompt_source is 'none' are "
                             "left out of training (see `usable_rows`).")
        # A row prompted by its own clip's tail is supervised only before that tail (`supervised_speech_tokens`).
        supervised = [min(len(r["speech_tokens"]), int(r.get("supervised_speech_tokens", len(r["speech_tokens"]))))
                      for r in rows]
        batch = {
            "text_tokens": _pad(text),
            "text_token_lens": torch.tensor([len(t) for t in text]),
            "speech_tokens": _pad(speech),
            "speech_token_lens": torch.tensor([len(s) for s in speech]),
            "speech_loss_lens": torch.tensor([n + 1 if n == len(r["speech_tokens"]) else n
                                              for n, r in zip(supervised, rows)]),
            "prompt_speech_tokens": _pad([tokens for tokens, _ in prompts]),
            "prompt_speech_lens": torch.tensor([len(tokens) for tokens, _ in prompts]),
            "speaker_emb": torch.tensor([embedding for _, embedding in prompts], dtype=torch.float32),
            "emotion_adv": torch.full((len(rows), 1, 1), self.emotion_adv),
        }
        if self.uncond_fraction > 0:
            batch["text_uncond"] = torch.tensor([
                r.get("id") in self._train_ids and self._rng(r["id"], "uncond").random() < self.uncond_fraction
                for r in rows])
        if "id" in rows[0]:
            batch["ids"] = [r["id"] for r in rows]  # not a tensor: the trainer takes it out before the model
        if self.with_s3gen:
            # Each row's own mel and own x-vector, as CosyVoice's flow recipe (upstream's `compute_loss`) trained the
            # base: the flow's prompt is a prefix of the same mel, drawn inside `compute_loss`. Not a leak to fix:
            # at inference the prompt and x-vector come from the reference the new speech continues.
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


def usable_rows(split):
    """Rows that can train: every row with a prompt from other clips of its speaker or (`self_prompt`) from its own
    clip's tail; a speaker's only clip without one (`prompt_source` 'none') is left out."""
    if "prompt_source" not in split.column_names:
        return split
    return split.filter(lambda source: source != "none", input_columns="prompt_source", desc="rows with a prompt")

