"""A prompt list read in one take: which stretches of speech are which line.

Voice talents record a script line by line with a pause between lines. `match_script` pairs the VAD's stretches
of speech with the lines in order, by length alone (no model: this works offline): each line's expected length
is its share of the characters times the take's speaking rate, and a monotonic alignment (dynamic programming,
as DTW) groups consecutive stretches into lines so that lengths fit best, cutting only in pauses. Speech that fits
no line (a cough, a retake's first attempt) and lines that fit no speech (skipped when reading) are returned as
such, so they are reported, and the length ratio of each match says how well it fits (the caller lets an ASR or
an aligner decide the doubtful ones).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .text import normalize_spanish
from .vad import Span

SKIP_SPEECH = 4.0
"""Cost of leaving a stretch of speech out, per stretch plus per second: above any plausible length misfit."""
SKIP_LINE = 6.0
"""Cost of leaving a line unmatched."""
MISFIT = 20.0
"""Cost of a length misfit, times the squared log of the ratio: a line read 25% shorter or longer than expected
costs 1, one read 60% longer costs 4.4 (the lines of a take vary by about 20% around the take's rate)."""
TWO_LINES = 4.0
"""Cost of two lines read without a pause between them (one clip with both)."""
PAUSE_INSIDE = 2.0
"""Cost of a pause kept inside a line, times its square in seconds: lines end at the take's long pauses."""


@dataclass
class ScriptMatch:
    """Lines `lines` (indices; one, or two read without a pause between them) spoken in regions `first..last`,
    or a line with no speech (`first` None), or speech with no line (`lines` empty). `ratio`: the matched speech's
    length over the length expected from the line's characters."""

    lines: list[int]
    first: int | None = None
    last: int | None = None
    ratio: float | None = None


def spoken_length(line: str) -> int:
    """Letters a line is spoken with (numbers spelled out), the measure of its expected duration."""
    return max(len(re.sub(r"[^\w]", "", normalize_spanish(line))), 1)


def match_script(regions: Sequence[Span], lines: Sequence[str], max_regions: int = 12,
                 max_pause_inside: float = 2.0) -> list[ScriptMatch]:
    """Pairs `regions` (in order) with `lines` (in order); see the module docstring. A line takes up to
    `max_regions` consecutive stretches (pauses inside a line: commas, breaths), never across a pause longer
    than `max_pause_inside`; two consecutive lines may share stretches when no pause was left between them."""
    n, m = len(regions), len(lines)
    if n == 0 or m == 0:
        return [ScriptMatch([k]) for k in range(m)] + [ScriptMatch([], i, i) for i in range(n)]
    letters = [spoken_length(line) for line in lines]
    speech = sum(r.duration for r in regions)
    rate = speech / sum(letters)  # seconds per letter over the whole take (pauses between stretches excluded)

    spoken_before = [0.0]
    for region in regions:
        spoken_before.append(spoken_before[-1] + region.duration)
    letters_before = [0]
    for count in letters:
        letters_before.append(letters_before[-1] + count)

    def misfit(i: int, j: int, k0: int, k1: int) -> float:
        spoken = spoken_before[j] - spoken_before[i]
        expected = rate * (letters_before[k1] - letters_before[k0])
        return math.log(spoken / expected) ** 2 * MISFIT

    # Only states near the diagonal: a take is read in order, so after a share of the speech about the same share
    # of the lines is read (wide enough for a few long retakes or skipped lines).
    band = max(0.15, 30 / m)

    inf = math.inf
    # cost[j][k]: best cost with regions[:j] and lines[:k] used; back[j][k]: the step that got there.
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for j in range(n + 1):
        for k in range(m + 1):
            here = cost[j][k]
            if here == inf or abs(j / n - k / m) > band:
                continue
            if j < n and here + SKIP_SPEECH * (1 + regions[j].duration) < cost[j + 1][k]:
                cost[j + 1][k], back[j + 1][k] = here + SKIP_SPEECH * (1 + regions[j].duration), (j, k)
            if k < m and here + SKIP_LINE < cost[j][k + 1]:
                cost[j][k + 1], back[j][k + 1] = here + SKIP_LINE, (j, k)
            inside = 0.0
            for end in range(j + 1, min(j + max_regions, n) + 1):
                if end > j + 1:
                    pause = regions[end - 1].start - regions[end - 2].end
                    if pause > max_pause_inside:
                        break
                    inside += PAUSE_INSIDE * pause * pause
                for lines_taken, penalty in ((1, 0.0), (2, TWO_LINES)):
                    if k + lines_taken > m:
                        continue
                    total = here + misfit(j, end, k, k + lines_taken) + penalty + inside
                    if total < cost[end][k + lines_taken]:
                        cost[end][k + lines_taken], back[end][k + lines_taken] = total, (j, k)
    matches: list[ScriptMatch] = []
    j, k = n, m
    while (j, k) != (0, 0):
        pj, pk = back[j][k]
        if pj == j:
            matches.append(ScriptMatch([pk]))
        elif pk == k:
            matches.append(ScriptMatch([], pj, pj))
        else:
            spoken = spoken_before[j] - spoken_before[pj]
            expected = rate * (letters_before[k] - letters_before[pk])
            matches.append(ScriptMatch(list(range(pk, k)), pj, j - 1, spoken / expected))
        j, k = pj, pk
    matches.reverse()
    return matches
