"""Where a long recording holds speech, and where to cut it into clips.

`speech_regions` runs Silero VAD (the `silero-vad` package ships its model, so it works offline) and returns the
stretches of speech; `plan_cuts` groups consecutive stretches into clips within the length bounds, cutting only
in pauses: never inside a stretch of speech, never inside a word where word timings are known, and preferring
the longest pauses. Speech that cannot be cut within the bounds is returned with its reason, never dropped
silently.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VAD_SR = 16_000
"""Silero VAD's sample rate (and Whisper's, and the aligners')."""


@dataclass(frozen=True)
class Span:
    """A stretch of a recording, in seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Word(Span):
    """A word with its timing in the recording (from an ASR or an aligner); `score`: the aligner's mean
    probability of its characters' frames (None from an ASR)."""

    text: str = ""
    score: float | None = None


@dataclass
class Cut:
    """A planned clip: the speech stretches it joins, the audio it spans (padding included), and why it cannot be
    used (`reason`: a rejection code, None when it can)."""

    first: int
    last: int
    span: Span
    reason: str | None = None
    detail: str = ""


@functools.lru_cache(maxsize=1)
def load_vad():
    """Silero VAD's TorchScript model, loaded once. Importing `silero_vad` sets PyTorch's thread count to 1 for
    the whole process; the count is put back."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad

        return load_silero_vad()
    finally:
        torch.set_num_threads(threads)


def speech_regions(wav: np.ndarray, threshold: float = 0.5, min_silence: float = 0.1,
                   min_speech: float = 0.25) -> list[Span]:
    """The stretches of speech in `wav` (mono, `VAD_SR`), as Silero VAD finds them: a pause of at least
    `min_silence` seconds separates two stretches; stretches shorter than `min_speech` are left out (clicks,
    breaths). No padding: `plan_cuts` adds it."""
    import torch
    from silero_vad import get_speech_timestamps

    found = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), load_vad(),
                                  threshold=threshold, sampling_rate=VAD_SR,
                                  min_speech_duration_ms=int(min_speech * 1000),
                                  min_silence_duration_ms=int(min_silence * 1000), speech_pad_ms=0)
    return [Span(item["start"] / VAD_SR, item["end"] / VAD_SR) for item in found]


def _cuttable(regions: Sequence[Span], words: Sequence[Word] | None, reach: float = 0.05) -> list[bool]:
    """For each pause between regions i and i + 1: whether a cut may go there. Not where a known word spans the
    whole pause, reaching `reach` seconds into the speech on both sides (a word spoken across it); a word that only
    runs into the pause (ASR word timings often do) does not count."""
    ordered = sorted(words or (), key=lambda w: w.start)
    starts = [w.start for w in ordered]
    latest_end = list(itertools.accumulate((w.end for w in ordered), max))  # over the words started so far
    allowed = []
    for before, after in zip(regions, regions[1:]):
        started = bisect.bisect_left(starts, before.end - reach)  # words starting inside the speech before
        allowed.append(not (started and latest_end[started - 1] > after.start + reach))
    return allowed


def plan_cuts(regions: Sequence[Span], duration: float, min_seconds: float, max_seconds: float,
              max_pause: float = 2.0, padding: float = 0.2, words: Sequence[Word] | None = None) -> list[Cut]:
    """Groups consecutive speech `regions` into clips whose speech spans `min_seconds` to `max_seconds`.

    A cut goes in a pause between two regions, where no word of `words` lies across it; a clip never holds a pause
    longer than `max_pause` (a long silence inside a training clip teaches T3 to pause). Among the groupings that
    fit, the one that keeps the least pause inside clips (each pause's square, so long pauses become cuts first)
    wins. Each clip keeps up to `padding` seconds of the pause on each side (at most half of it, so neighbours
    never overlap). Speech no grouping can fit (a stretch longer than `max_seconds` with no pause to cut at, or
    shorter than `min_seconds` between long pauses) comes back as a cut with a `reason` (too_long, too_short).
    """
    n = len(regions)
    if n == 0:
        return []
    allowed = _cuttable(regions, words)
    longest = max_seconds - 2 * padding  # speech plus its padding stays within the bounds

    def pause(i: int) -> float:  # the pause after region i
        return regions[i + 1].start - regions[i].end

    # best[j]: (cost, start of the last group, kind) with regions[:j] covered; kind "clip" or a rejection reason.
    # A group may end after region j - 1 only where a cut may follow it.
    inf = math.inf
    best: list[tuple[float, int, str]] = [(0.0, -1, "")] + [(inf, -1, "")] * n
    for j in range(1, n + 1):
        if j < n and not allowed[j - 1]:
            continue
        inside = 0.0
        for i in range(j - 1, -1, -1):  # the group regions[i:j]
            if i < j - 1:
                gap = pause(i)
                if gap > max_pause:
                    break
                inside += gap * gap
            speech = regions[j - 1].end - regions[i].start
            if speech > longest:
                break
            if speech >= min_seconds and best[i][0] + inside < best[j][0]:
                best[j] = (best[i][0] + inside, i, "clip")
        if best[j][0] == inf:  # nothing fits: the shortest run of regions back to a possible cut, rejected
            i = next(i for i in range(j - 1, -1, -1) if best[i][0] < inf)
            speech = regions[j - 1].end - regions[i].start
            best[j] = (best[i][0] + 1e6 * (1 + speech), i, "too_long" if speech > longest else "too_short")
    cuts: list[Cut] = []
    j = n
    while j > 0:
        _, i, kind = best[j]
        cuts.append(Cut(i, j - 1, Span(regions[i].start, regions[j - 1].end), None if kind == "clip" else kind))
        j = i
    cuts.reverse()
    padded = []
    for cut in cuts:
        if cut.reason == "too_long":
            cut.detail = f"{cut.span.duration:.2f} s of speech without a pause to cut at below {max_seconds} s"
        elif cut.reason:
            cut.detail = f"{cut.span.duration:.2f} s of speech alone between long pauses (min_seconds {min_seconds})"
        padded.append(Cut(cut.first, cut.last, padded_span(regions, cut.first, cut.last, duration, padding),
                          cut.reason, cut.detail))
    return padded


def padded_span(regions: Sequence[Span], first: int, last: int, duration: float, padding: float) -> Span:
    """The span of `regions[first..last]` with up to `padding` seconds of the pause on each side: at most half of
    a pause shared with a neighbour (so clips never overlap), all of the recording's own start or end."""
    before = regions[first].start - (regions[first - 1].end if first > 0 else 0.0)
    after = (regions[last + 1].start if last + 1 < len(regions) else duration) - regions[last].end
    start = regions[first].start - min(padding, before / 2 if first > 0 else before)
    end = regions[last].end + min(padding, after / 2 if last + 1 < len(regions) else after)
    return Span(max(start, 0.0), min(end, duration))


def words_in(words: Sequence[Word], cuts: Sequence[Cut]) -> list[list[Word]]:
    """Each cut's words: a word belongs to the cut whose span holds its middle, or else to the nearest cut, so
    every word lands in exactly one cut, in order."""
    held: list[list[Word]] = [[] for _ in cuts]
    if not cuts:
        return held
    for word in words:
        middle = (word.start + word.end) / 2
        distances = [0.0 if c.span.start <= middle <= c.span.end else min(abs(middle - c.span.start),
                                                                          abs(middle - c.span.end)) for c in cuts]
        held[int(np.argmin(distances))].append(word)
    return held
