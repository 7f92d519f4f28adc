"""The sentences an evaluation speaks, each with the voice to speak it in.

- `load_test_items`: the test split of a prepared dataset, or a folder in the folder layout; each sentence is spoken
  with a reference of its speaker built as training's prompts are (6 s of other clips, never its own audio) and
  scored against its recording.
- `protocol_items`: a protocol's fixed list (`lists/`), so figures from any machine compare: each sentence is spoken
  by a held-out speaker of its accent (the test data's speakers of that accent in turn, sorted by id; the
  reference is the speaker's longest clip up to 10 s, joined with the next longest until it reaches 6 s). There is
  no recording of these sentences: no ground truth.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.audio import resample
from ..utils import content_digest

class EvaluationDataError(ValueError):
    """The test data cannot be scored as asked (no such split, no sentence with a reference); the message says what
    to change."""


LISTS = Path(__file__).parent / "lists"
PROTOCOL_LISTS = {"seed-tts-eval": LISTS / "seed_tts_eval_es.tsv"}
MAX_REFERENCE_SECONDS = 10.0
"""S3Gen's reference is cut at 10 s (T3's at 6 s): a longer clip adds nothing."""


@dataclass
class TestItem:
    id: str
    text: str
    speaker_id: str
    accent: str
    truth: np.ndarray | None
    """The sentence's recording (none for a protocol's list)."""
    reference: np.ndarray
    sample_rate: int
    reference_ids: tuple[str, ...] = ()
    """The ids of the clips `reference` is joined from (never this item's own)."""


def load_test_items(test_data: str, max_samples: int | None = None, skipped: list[str] | None = None,
                    split: str | None = None) -> list[TestItem]:
    """Test sentences with their recordings and references, from a prepared dataset (its `test` split, or `split`
    when asked for knowingly) or a folder in the folder layout. The reference is built as a user's arrives and as
    training's prompts are (`data.references`): the prepared prompt's clips joined, or in a folder the speaker's
    other clips joined until they reach 6 s, in an order seeded by the speaker and the file name (the same
    references wherever the folder lies). A sentence whose speaker has no other clip is left
    out (its id appended to `skipped`): a reference is never the sentence's own audio."""
    from ..data.dataset import load_prepared, mono_samples, reference_audio, row_index

    path = Path(test_data)
    items: list[TestItem] = []
    skipped = [] if skipped is None else skipped
    if (path / "metadata.csv").exists():
        from ..data.config import DataConfig
        from ..constants import PROMPT_SECONDS
        from ..data.audio import CleaningConfig, clean_audio, decode_audio
        from ..data.references import join_clips, seeded_order, take_until
        from ..data.sources import read_folder

        if split:
            raise EvaluationDataError(f"--split {split}: {test_data} is a folder of recordings, not a prepared "
                                      "dataset with splits; every sentence in it is scored.")
        rows = [r for r in read_folder(DataConfig(input_path=str(path))) if r.problem is None and r.text]
        by_speaker = defaultdict(list)
        for row in rows:
            by_speaker[row.speaker_id].append(row.audio)
        cleaning = CleaningConfig()
        cleaned: dict[str, np.ndarray] = {}  # a clip serves in several references: decode each once

        def clean(audio: str) -> np.ndarray:
            if audio not in cleaned:
                cleaned[audio] = clean_audio(*decode_audio(audio), cleaning)
            return cleaned[audio]

        for row in rows:
            others = [audio for audio in by_speaker[row.speaker_id] if audio != row.audio]
            if not others:
                skipped.append(Path(row.audio).stem)
                continue
            if max_samples and len(items) >= max_samples:
                continue  # counted above when it has no reference; beyond max_samples, not decoded
            order = seeded_order(others, f"reference:{row.speaker_id}/{Path(row.audio).name}")
            joined = take_until(order, lambda audio: len(clean(audio)) / cleaning.sampling_rate, PROMPT_SECONDS)
            items.append(TestItem(Path(row.audio).stem, row.text, row.speaker_id, row.accent or "",
                                  clean(row.audio), join_clips([clean(a) for a in joined], cleaning.sampling_rate),
                                  cleaning.sampling_rate, tuple(Path(a).stem for a in joined)))
    else:
        dataset = load_prepared(path)
        name = split or "test"
        if name not in dataset:
            hint = ("prepare it with test_size > 0 or heldout_speakers for a held-out test split, or pass --split "
                    "NAME to score one of these knowingly (the report then says so)")
            raise EvaluationDataError(f"{test_data} has no '{name}' split (its splits: {', '.join(dataset)}): "
                                      f"{hint}.")
        where = row_index(dataset)
        for row in dataset[name]:
            if row.get("prompt_source", "other") != "other" or row["id"] in row["prompt_ids"]:
                skipped.append(row["id"])
                continue
            truth, sr = mono_samples(row["audio"])
            reference, ref_sr = reference_audio(dataset, where, row["prompt_ids"])
            items.append(TestItem(row["id"], row["raw_text"], row["speaker_id"], row["accent"], truth,
                                  resample(reference, ref_sr, sr), sr, tuple(row["prompt_ids"])))
    if not items:
        raise EvaluationDataError(f"No test sentences in {test_data}" + (
            f" whose speaker has another clip to take the voice from ({len(skipped)} left out)." if skipped else "."))
    return items[:max_samples] if max_samples else items


def read_protocol_list(protocol: str) -> list[dict[str, str]]:
    """The protocol's sentences: rows of `id`, `accent`, `kind` (numbers, abbreviations, question, long), `text`."""
    with PROTOCOL_LISTS[protocol].open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def protocol_list_path(protocol: str) -> str:
    """Where the list is, as the repository names it."""
    return PROTOCOL_LISTS[protocol].relative_to(Path(__file__).parents[2]).as_posix()


def protocol_list_digest(protocol: str) -> str:
    """The first 12 hex digits of the list's SHA-256: reports name it, so two figures say they used the same list."""
    return content_digest(PROTOCOL_LISTS[protocol].read_bytes())[:12]


def protocol_items(protocol: str, test_data: str, max_samples: int | None = None,
                   skipped: list[str] | None = None, split: str | None = None) -> list[TestItem]:
    """The protocol's sentences, each with a reference from `test_data`'s held-out speakers of its accent (see the
    module docstring); a sentence whose accent has no speaker there is left out (its id appended to `skipped`)."""
    from ..constants import PROMPT_SECONDS
    from ..data.references import join_clips, take_until

    skipped = [] if skipped is None else skipped
    clips = load_test_items(test_data, split=split)
    by_speaker: dict[str, list[TestItem]] = defaultdict(list)
    for clip in clips:
        by_speaker[clip.speaker_id].append(clip)
    speakers_of: dict[str, list[str]] = defaultdict(list)
    for speaker in sorted(by_speaker):
        speakers_of[by_speaker[speaker][0].accent].append(speaker)

    def reference(speaker: str) -> np.ndarray:
        """The speaker's longest clip up to 10 s, joined with the next longest until it reaches 6 s (T3's prompt),
        as `data.references` builds every prompt."""
        fitting = [c for c in by_speaker[speaker] if len(c.truth) <= MAX_REFERENCE_SECONDS * c.sample_rate]
        joined = take_until(sorted(fitting or by_speaker[speaker], key=lambda c: (-len(c.truth), c.id)),
                            lambda clip: len(clip.truth) / clip.sample_rate, PROMPT_SECONDS)
        return join_clips([clip.truth for clip in joined], by_speaker[speaker][0].sample_rate)

    items, turn = [], defaultdict(int)
    for row in read_protocol_list(protocol):
        speakers = speakers_of.get(row["accent"])
        if not speakers:
            skipped.append(row["id"])
            continue
        speaker = speakers[turn[row["accent"]] % len(speakers)]
        turn[row["accent"]] += 1
        items.append(TestItem(row["id"], row["text"], speaker, row["accent"], None, reference(speaker),
                              by_speaker[speaker][0].sample_rate))
    if not items:
        raise EvaluationDataError(f"{test_data} has no speaker of the accents of the {protocol} list "
                                  f"({sorted({r['accent'] for r in read_protocol_list(protocol)})}): pass held-out "
                                  "data with an accent column.")
    return items[:max_samples] if max_samples else items
