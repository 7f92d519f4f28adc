"""References: every prompt built from a speaker's clips the way a user's reference arrives at inference.

A user gives one recording of the voice; upstream's `prepare_conditionals` takes T3's prompt from its first 6 s
(150 tokens), the speaker embedding from all of it and S3Gen's prompt from its first 10 s. Training and evaluation
build each prompt the same way, from the speaker's clips of the same split: a clip of 6 s or more alone, else
several clips joined with a short pause (`REFERENCE_GAP_SECONDS`) until they reach 6 s, so a corpus of 3-5 s clips
(Common Voice, OpenSLR) still conditions T3 on a whole 6 s prompt. A speaker with less audio than that in a split
gives a shorter reference; the preparation summary names such speakers.

Each clip belongs to at most one of its speaker's references (`plan_references`), so the references of a split
hold each clip's audio once and are tokenised once. A row's prompt is one of its speaker's references that does
not hold the row's own clip (`SpeakerReferences.draw`); where every reference holds it (a speaker with just enough
audio for one), the speaker's other clips are joined for that row alone (`fallback_reference`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np

from ..constants import REFERENCE_GAP_SECONDS

Reference = tuple[str, ...]
"""Clip ids, in the order their audio is joined."""
T = TypeVar("T")


def joined_seconds(durations: list[float]) -> float:
    """Length of clips joined with the gap between them."""
    return sum(durations) + REFERENCE_GAP_SECONDS * max(0, len(durations) - 1)


def seeded_order(clip_ids, seed: str) -> list[str]:
    """The clip ids in an order that depends only on the ids and `seed`."""
    order = sorted(clip_ids)
    random.Random(seed).shuffle(order)
    return order


def plan_references(durations: dict[str, float], seconds: float, seed: str) -> list[Reference]:
    """One speaker's references in one split (`durations`: clip id -> seconds). Each clip of `seconds` or longer
    is a reference alone; the shorter ones, in an order seeded by `seed`, are joined until they reach `seconds`.
    Short clips left over join the last joined reference; where there is none they form one of their own only when
    the speaker has no long clip (a speaker with less than `seconds` of audio)."""
    order = seeded_order(durations, seed)
    references: list[Reference] = [(clip,) for clip in order if durations[clip] >= seconds]
    joined: list[list[str]] = []
    current: list[str] = []
    for clip in (c for c in order if durations[c] < seconds):
        current.append(clip)
        if joined_seconds([durations[c] for c in current]) >= seconds:
            joined.append(current)
            current = []
    if current:
        if joined:
            joined[-1] += current
        elif not references:
            joined.append(current)
    return references + [tuple(group) for group in joined]


class SpeakerReferences:
    """One speaker's references in one split, and which one holds each clip: `draw` picks one that does not hold a
    given clip in constant time, however many the speaker has."""

    def __init__(self, references: list[Reference]):
        self.references = list(references)
        self.holder = {clip: i for i, reference in enumerate(self.references) for clip in reference}

    def draw_index(self, clip_id: str, rng: random.Random) -> int | None:
        """The index of a reference that does not hold `clip_id`, drawn with `rng` (None when none is left)."""
        count, held = len(self.references), self.holder.get(clip_id)
        if held is None:
            return rng.randrange(count) if count else None
        if count == 1:
            return None
        index = rng.randrange(count - 1)
        return index + (index >= held)

    def draw(self, clip_id: str, rng: random.Random) -> Reference | None:
        """A reference that does not hold `clip_id`, drawn with `rng` (None when none is left)."""
        index = self.draw_index(clip_id, rng)
        return None if index is None else self.references[index]


def take_until(items: Iterable[T], seconds_of: Callable[[T], float], seconds: float) -> list[T]:
    """The first `items` whose audio, joined with the gap between them, reaches `seconds` (all of them when it does
    not): how a reference of several clips is gathered."""
    taken: list[T] = []
    for item in items:
        taken.append(item)
        if joined_seconds([seconds_of(x) for x in taken]) >= seconds:
            break
    return taken


def fallback_reference(clip_id: str, durations: dict[str, float], seconds: float, seed: str) -> Reference | None:
    """The speaker's other clips (`durations`), in a seeded order, joined until they reach `seconds` (all of them
    when they do not): the prompt of a row whose every reference holds its own clip. None for a lone clip."""
    others = seeded_order((clip for clip in durations if clip != clip_id), seed)
    return tuple(take_until(others, durations.__getitem__, seconds)) or None


def join_clips(wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """The clips' audio joined with `REFERENCE_GAP_SECONDS` of silence between them: one reference recording."""
    gap = np.zeros(int(round(REFERENCE_GAP_SECONDS * sample_rate)), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for i, wav in enumerate(wavs):
        pieces += [gap, wav.astype(np.float32)] if i else [wav.astype(np.float32)]
    return np.concatenate(pieces)
