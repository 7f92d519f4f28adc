"""Raw recordings -> validated, cleaned clips -> cached features -> a map-style prepared dataset with splits.

`prepare_dataset` is the library side of `training/prepare_data.py`. It never stops on a bad row: each one is
recorded in `<prepared_dir>/rejected.jsonl` with its reason, and every good row is kept. Work is cached by
content (cleaned clips by source bytes and cleaning settings; features by clip and checkpoint), each cache file
written atomically, so a rerun recomputes nothing and a killed run continues where it stopped. The dataset is
assembled in a staging folder and renamed into place, so `<prepared_dir>/dataset` is always complete.

Columns of every split:
    id, source, audio (cleaned, 24 kHz FLAC), text (what T3 reads), raw_text, speaker_id, accent, duration,
    speech_tokens (S3, 25 Hz), speaker_emb (VoiceEncoder, 256, unit norm),
    prompt_ids, prompt_source, prompt_speech_tokens, prompt_speaker_emb (the row's prompt, see below),
    reference_ids, reference_speech_tokens, reference_speaker_emb (the reference this clip heads, see below),
    supervised_speech_tokens (speech tokens that carry the loss),
    and with S3Gen features: speech_feat (2T x 80 mel at 24 kHz), xvector (CAMPPlus, 192);
    plus any extra columns of the source.

Splits are drawn by sentence: every reading of a normalised sentence (`text.sentence_key`) goes to one split, so a
sentence several speakers read (Common Voice, OpenSLR) is never trained on and tested. `heldout_speakers` and
`validation_speakers` make those splits of whole speakers instead; the summary reports the sentence groups and any
sentence a held-out speaker shares with training.

Every prompt is built the way a user's reference arrives (`references`): 6 s of the speaker, one clip or several of
the same split joined with a short pause. A clip heads at most one of its speaker's references
(`reference_*` columns, empty when it heads none); training draws each row's prompt anew each epoch from the
references of its speaker that do not hold its own clip (`collator.PromptPool`), and `prompt_*` is the prepared
choice (evaluation, validation loss). No clip is its own prompt. `prompt_source` says where a row's prompt comes
from:
- 'other': other clips of the same speaker (`prompt_ids`, joined in that order). Validation and test rows take a
  reference of their own split when it reaches 6 s, else one of the training split (a reference is no target:
  nothing leaks into training).
- 'tail' (only with `self_prompt`): the speaker's only clip lends its last part (`self_prompt_min_seconds`); the
  loss covers only the speech before it (`supervised_speech_tokens`), so its stop token is never supervised.
- 'none': a speaker's only clip: left out of training and of evaluation, counted in the summary.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from .config import DataConfig
from ..models.config import ModelConfig
from ..constants import TOKENS_PER_SECOND
from ..models.checkpoint import Checkpoint, resolve_checkpoint
from ..models.loading import load_text_tokenizer
from ..utils import content_digest, staged_directory, write_atomic
from .audio import CleaningConfig, Rejected, clean_audio, decode_audio, encode_flac
from .dataset import (
    DATASET_DIRNAME,
    PROMPT_SOURCES,
    REPORT_NAME,
    SETTINGS_NAME,
    SUMMARY_NAME,
    summary_table,
)
from .features import ClipFeatures, FeatureExtractor, length_batches, load_features, save_atomic
from .references import (
    Reference,
    SpeakerReferences,
    fallback_reference,
    join_clips,
    joined_seconds,
    plan_references,
)
from .sources import SourceRow, detect_format, iter_rows
from .text import sentence_key, text_for_model, unknown_graphemes

logger = logging.getLogger(__name__)
FEATURES_VERSION = 2  # bump when what features.py computes changes


@dataclass
class Clip:
    """A kept row: cleaned audio in the cache, its text, and where it came from."""

    id: str
    source: str
    clean_path: str
    text: str
    raw_text: str
    speaker_id: str
    accent: str
    duration: float
    extra: dict[str, str] = field(default_factory=dict)
    split: str | None = None  # assigned by the source (`validation_path`), else drawn


@dataclass
class Prompt:
    """Where a row's prompt comes from (`PROMPT_SOURCES`), the clips of its reference (joined in this order; for
    'tail' the row's own clip), and for 'tail' the seconds it takes."""

    source: str
    clip_ids: Reference = ()
    tail_seconds: float = 0.0


@dataclass
class PrepareResult:
    """What `prepare_dataset` made.

    Attributes:
        dataset_dir: The prepared `DatasetDict` (`load_prepared` reads it; training reads the folder above it).
        summary: What `summary.json` holds: clips in, kept, rejected by reason, splits, sentence groups, prompts,
            hours per accent and per speaker.
    """

    dataset_dir: Path
    summary: dict[str, Any]


class Preparer:
    """Holds the caches and the counters of one preparation run."""

    def __init__(self, model_config: ModelConfig, data_config: DataConfig, progress: bool = True):
        self.model_config = model_config
        self.config = data_config
        self.progress = progress
        self.prepared_dir = Path(data_config.prepared_dir)
        self.cache_dir = Path(data_config.cache_dir or self.prepared_dir / "cache")
        self.cleaning = CleaningConfig(
            sampling_rate=data_config.sampling_rate,
            min_seconds=data_config.min_audio_length,
            max_seconds=data_config.max_audio_length,
            trim_silence=data_config.trim_silence,
            trim_top_db=data_config.trim_top_db,
            target_loudness=data_config.target_loudness,
        )
        self.clean_dir = self.cache_dir / "clean" / content_digest(json.dumps(asdict(self.cleaning), sort_keys=True))[:12]
        self.checkpoint: Checkpoint = resolve_checkpoint(
            model_config.base_model, variant=model_config.model_variant, revision=model_config.model_revision,
            t3_model=model_config.t3_model,
        )
        self.tokenizer = load_text_tokenizer(self.checkpoint)
        self.rejected: list[dict[str, str]] = []
        self.rows_in = 0

    # -- rows -> clips -------------------------------------------------------------------------------------------
    def reject(self, row: SourceRow, problem: Rejected) -> None:
        source = row.audio if isinstance(row.audio, str) else "<bytes>"
        self.rejected.append(
            {"row": row.row_id, "source": source or "", "speaker_id": row.speaker_id, "reason": problem.reason,
             "detail": problem.detail}
        )

    def clean_row(self, row: SourceRow, seen_sources: set[str], seen_audio: dict[str, str]) -> Clip:
        """Validates one row and returns its clip (cleaned audio cached by content); raises `Rejected`."""
        if row.problem:
            raise row.problem
        if self.config.accents and row.accent not in self.config.accents:
            raise Rejected("bad_row", f"accent {row.accent!r} not in data.accents")
        raw_text = (row.text or "").strip()
        if not raw_text:
            raise Rejected("empty_transcript")
        text = text_for_model(raw_text, accent=row.accent, normalize=self.config.normalize_text)
        unknown = unknown_graphemes(text, self.tokenizer, self.config.language)
        if unknown:
            raise Rejected("unsupported_text", f"no tokens for {''.join(unknown)!r} in {text!r}")
        key = row.source_key
        if key is not None:
            if key in seen_sources:
                raise Rejected("duplicate", f"{row.audio} is listed more than once")
            seen_sources.add(key)
        if isinstance(row.audio, str):
            path = Path(row.audio)
            if not path.is_file():
                raise Rejected("missing_file", str(path))
            data = path.read_bytes()
        else:
            data = row.audio or b""
        if not data:
            raise Rejected("empty_file")
        content = content_digest(data)
        if content in seen_audio:
            raise Rejected("duplicate", f"same audio as {seen_audio[content]}")
        seen_audio[content] = row.row_id

        clean_path = self.clean_dir / content[:2] / f"{content}.flac"
        rejection_path = clean_path.with_suffix(".rejected.json")
        if rejection_path.exists():
            cached = json.loads(rejection_path.read_text())
            raise Rejected(cached["reason"], cached["detail"])
        if not clean_path.exists():
            try:
                samples, rate = decode_audio(data)
                wav = clean_audio(samples, rate, self.cleaning)
            except Rejected as problem:
                write_atomic(rejection_path, json.dumps({"reason": problem.reason, "detail": problem.detail}).encode())
                raise
            write_atomic(clean_path, encode_flac(wav, self.cleaning.sampling_rate))
        duration = sf.info(str(clean_path)).duration
        return Clip(
            id=content[:16], source=row.audio if isinstance(row.audio, str) else row.row_id,
            clean_path=str(clean_path), text=text, raw_text=raw_text, speaker_id=row.speaker_id,
            accent=row.accent or "", duration=round(duration, 3), extra=row.extra, split=row.split,
        )

    def collect_clips(self) -> list[Clip]:
        clips: list[Clip] = []
        seen_sources: set[str] = set()
        seen_audio: dict[str, str] = {}
        for row in tqdm(iter_rows(self.config), desc="clean", unit="clip", disable=not self.progress):
            self.rows_in += 1
            try:
                clips.append(self.clean_row(row, seen_sources, seen_audio))
            except Rejected as problem:
                self.reject(row, problem)
        return clips

    # -- clips -> features -----------------------------------------------------------------------------------------
    @functools.cached_property
    def feature_dir(self) -> Path:
        """Features depend on the clip, the checkpoint's encoders and these settings: all in the cache path."""
        tag = f"v{FEATURES_VERSION}-{self.checkpoint.fingerprint()}-p{self.config.max_prompt_seconds}"
        if self.model_config.train_s3gen:
            tag += "-s3gen"
        return self.cache_dir / "features" / tag

    def feature_path(self, clip_id: str) -> Path:
        return self.feature_dir / clip_id[:2] / f"{clip_id}.safetensors"

    @functools.cached_property
    def extractor(self) -> FeatureExtractor:
        """The base's encoders, loaded once per run and only when some feature is not in the cache yet."""
        return FeatureExtractor(self.checkpoint, device=self.config.device, with_s3gen=self.model_config.train_s3gen,
                                max_prompt_seconds=self.config.max_prompt_seconds)

    def extract_features(self, clips: list[Clip]) -> None:
        todo = [clip for clip in clips if not self.feature_path(clip.id).exists()]
        if not todo:
            return
        extractor = self.extractor
        batches = length_batches([c.duration for c in todo], self.config.feature_batch_seconds)
        with tqdm(total=len(todo), desc="features", unit="clip", disable=not self.progress) as bar:
            for batch in batches:
                wavs = [sf.read(todo[i].clean_path, dtype="float32")[0] for i in batch]
                for i, features in zip(batch, extractor.extract(wavs)):
                    save_atomic(features, self.feature_path(todo[i].id))
                bar.update(len(batch))

    # -- prompts and splits ------------------------------------------------------------------------------------------
    def plan(self, splits: dict[str, list[Clip]]) -> tuple[dict[str, Prompt], dict[str, Reference]]:
        """Each clip's prompt and the references clips head (see the module docstring): per split and speaker the
        references of `references.plan_references`; a row takes one that does not hold its own clip (validation and
        test rows one of the training split when theirs falls short of `max_prompt_seconds`), else its speaker's
        other clips joined: the first of those that reaches `max_prompt_seconds`, else the longest. Else its own tail
        (`self_prompt`), else none. Seeded per speaker and per clip, so a clip's prompt does not change when other
        speakers' rows come or go."""
        seconds, seed = self.config.max_prompt_seconds, self.config.split_seed
        duration = {clip.id: clip.duration for clips in splits.values() for clip in clips}
        durations: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for name, clips in splits.items():
            for clip in clips:
                durations[(name, clip.speaker_id)][clip.id] = clip.duration
        planned = {key: SpeakerReferences(plan_references(clips, seconds, f"{seed}:{key[0]}:{key[1]}"))
                   for key, clips in durations.items()}
        none = SpeakerReferences([])

        def length(reference: Reference) -> float:
            return joined_seconds([duration[c] for c in reference])

        prompts = {}
        for name, clips in splits.items():
            for clip in clips:
                key, choice = (name, clip.speaker_id), f"{seed}:{clip.id}"
                options = [planned[key].draw(clip.id, random.Random(choice))]
                if name != "train":
                    options.append(planned.get(("train", clip.speaker_id), none).draw(clip.id, random.Random(choice)))
                options = [option for option in options if option]
                if not any(length(option) >= seconds for option in options):  # (rare: sorts the speaker's clips)
                    options += [fallback_reference(clip.id, durations[key], seconds, choice) or ()]
                # the first that is a whole reference, else the longest there is
                reference = next((o for o in options if length(o) >= seconds), max(options, key=length, default=()))
                tail = min(seconds, clip.duration / 2)
                if reference:
                    prompts[clip.id] = Prompt("other", reference)
                elif self.config.self_prompt and tail >= self.config.self_prompt_min_seconds:
                    prompts[clip.id] = Prompt("tail", (clip.id,), round(tail, 2))
                else:
                    prompts[clip.id] = Prompt("none")
        heads = {reference[0]: reference for references in planned.values() for reference in references.references}
        return prompts, heads

    def reference_path(self, reference: Reference) -> Path:
        digest = content_digest(*reference)[:24]
        return self.feature_dir / "references" / digest[:2] / f"{digest}.safetensors"

    def tail_path(self, prompt: Prompt) -> Path:
        return self.feature_path(prompt.clip_ids[0]).with_suffix(f".tail{prompt.tail_seconds:.2f}.safetensors")

    def reference_features(self, reference: Reference) -> ClipFeatures:
        """What inference takes from the reference: T3's prompt tokens (its first `max_prompt_seconds`, tokenised
        alone) and the speaker embedding of all of it. A single clip's are its own features."""
        return load_features(self.feature_path(reference[0]) if len(reference) == 1 else self.reference_path(reference))

    def extract_references(self, clips: list[Clip], references: set[Reference], prompts: dict[str, Prompt]) -> None:
        """Reference features of every joined reference and every own tail (`self_prompt`), cached like the
        clips' features: each reference's audio is its clips joined (`references.join_clips`), as a user's
        recording of several sentences."""
        by_id = {clip.id: clip for clip in clips}
        todo: list[tuple[Path, Any]] = [(self.reference_path(r), r) for r in sorted(references) if len(r) > 1]
        todo += [(self.tail_path(p), p) for p in prompts.values() if p.source == "tail"]
        todo = [(path, what) for path, what in todo if not path.exists()]
        if not todo:
            return

        def audio(what) -> np.ndarray:
            if isinstance(what, Prompt):  # the last tail_seconds of the clip itself
                wav, rate = sf.read(by_id[what.clip_ids[0]].clean_path, dtype="float32")
                return wav[len(wav) - int(what.tail_seconds * rate):]
            return join_clips([sf.read(by_id[c].clean_path, dtype="float32")[0] for c in what],
                              self.config.sampling_rate)

        seconds = [what.tail_seconds if isinstance(what, Prompt) else
                   joined_seconds([by_id[c].duration for c in what]) for _, what in todo]
        with tqdm(total=len(todo), desc="references", unit="reference", disable=not self.progress) as bar:
            for batch in length_batches(seconds, self.config.feature_batch_seconds):
                wavs = [audio(todo[i][1]) for i in batch]
                for i, features in zip(batch, self.extractor.reference_features(wavs)):
                    save_atomic(features, todo[i][0])
                bar.update(len(batch))

    def split(self, clips: list[Clip]) -> tuple[dict[str, list[Clip]], list[Clip]]:
        """train / validation / test (see the module docstring), no sentence in two of them: `heldout_speakers` and
        `validation_speakers` whole, and the other readings of their sentences left out (returned second: they
        would train on, or choose the checkpoint by, a sentence the split is scored on); the other sentences in a
        seeded order until each split holds its share of the clips."""
        config = self.config
        speakers = {c.speaker_id for c in clips}
        by_speaker = {"test": set(config.heldout_speakers or []), "validation": set(config.validation_speakers or [])}
        for name, chosen in by_speaker.items():
            unknown = sorted(chosen - speakers)
            if unknown:
                field_name = "heldout_speakers" if name == "test" else "validation_speakers"
                raise ValueError(f"{field_name} {unknown} have no kept clips; speakers are {sorted(speakers)}.")
        speaker_split = {c.id: name for c in clips for name, chosen in by_speaker.items() if c.speaker_id in chosen}
        speaker_split.update({c.id: c.split for c in clips if c.split})  # validation_path's clips
        given = {c.split for c in clips if c.split}
        assigned, left_out, groups = {}, [], {}
        for key, group in sentence_groups(clips).items():
            names = {speaker_split[c.id] for c in group if c.id in speaker_split}
            if not names:
                groups[key] = group  # a sentence no held-out speaker reads: drawn below
                continue
            keep = "test" if "test" in names else "validation"  # a sentence a test speaker reads is test's
            for clip in group:
                if speaker_split.get(clip.id) == keep:
                    assigned[clip.id] = keep
                else:
                    left_out.append(clip)
        keys = sorted(groups)
        random.Random(config.split_seed).shuffle(keys)
        keys.reverse()  # taken from the end: the seeded order, each in constant time

        def share(fraction: float) -> int:
            return max(1, round(len(clips) * fraction)) if fraction > 0 and len(keys) >= 3 else 0

        for name, fraction in (("test", config.test_size), ("validation", config.validation_size)):
            if by_speaker[name] or name in given:
                continue
            wanted, taken = share(fraction), 0
            while taken < wanted and len(keys) > 1:  # the last sentence always trains
                for clip in groups[keys.pop()]:
                    assigned[clip.id] = name
                    taken += 1
        splits: dict[str, list[Clip]] = {"train": [], "validation": [], "test": []}
        out = {clip.id for clip in left_out}
        for clip in sorted(clips, key=lambda c: (c.speaker_id, c.source)):
            if clip.id not in out:
                splits[assigned.get(clip.id, "train")].append(clip)
        return splits, left_out

    # -- dataset ---------------------------------------------------------------------------------------------------------
    def features_schema(self, extra_columns: list[str]):
        import datasets

        columns = {
            "id": datasets.Value("string"),
            "source": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=self.config.sampling_rate),
            "text": datasets.Value("string"),
            "raw_text": datasets.Value("string"),
            "speaker_id": datasets.Value("string"),
            "accent": datasets.Value("string"),
            "duration": datasets.Value("float32"),
            "speech_tokens": datasets.List(datasets.Value("int32")),
            "speaker_emb": datasets.List(datasets.Value("float32"), length=256),
            "prompt_ids": datasets.List(datasets.Value("string")),
            "prompt_source": datasets.Value("string"),
            "prompt_speech_tokens": datasets.List(datasets.Value("int32")),
            "prompt_speaker_emb": datasets.List(datasets.Value("float32"), length=256),
            "reference_ids": datasets.List(datasets.Value("string")),
            "reference_speech_tokens": datasets.List(datasets.Value("int32")),
            "reference_speaker_emb": datasets.List(datasets.Value("float32"), length=256),
            "supervised_speech_tokens": datasets.Value("int32"),
        }
        if self.model_config.train_s3gen:
            columns["speech_feat"] = datasets.Array2D(shape=(None, 80), dtype="float32")
            columns["xvector"] = datasets.List(datasets.Value("float32"), length=192)
        for name in extra_columns:
            columns.setdefault(name, datasets.Value("string"))
        return datasets.Features(columns)

    def records(self, clips: list[Clip], prompts: dict[str, Prompt], heads: dict[str, Reference],
                extra_columns: list[str]):
        for clip in clips:
            own = load_features(self.feature_path(clip.id))
            prompt = prompts[clip.id]
            supervised = len(own.speech_tokens)
            headed = heads.get(clip.id, ())
            head = self.reference_features(headed) if headed else None
            if prompt.source == "other":
                reference = self.reference_features(prompt.clip_ids)
            elif prompt.source == "tail":
                reference = load_features(self.tail_path(prompt))
                supervised = min(supervised, int((clip.duration - prompt.tail_seconds) * TOKENS_PER_SECOND))
            else:
                reference, supervised = None, 0
            record = {
                "id": clip.id, "source": clip.source,
                "audio": {"bytes": Path(clip.clean_path).read_bytes(), "path": f"{clip.id}.flac"},
                "text": clip.text, "raw_text": clip.raw_text, "speaker_id": clip.speaker_id, "accent": clip.accent,
                "duration": clip.duration,
                "speech_tokens": own.speech_tokens.tolist(), "speaker_emb": own.speaker_emb.tolist(),
                "prompt_ids": list(prompt.clip_ids), "prompt_source": prompt.source,
                "prompt_speech_tokens": [] if reference is None else reference.prompt_tokens.tolist(),
                "prompt_speaker_emb": [0.0] * 256 if reference is None else reference.speaker_emb.tolist(),
                "reference_ids": list(headed),
                "reference_speech_tokens": [] if head is None else head.prompt_tokens.tolist(),
                "reference_speaker_emb": [0.0] * 256 if head is None else head.speaker_emb.tolist(),
                "supervised_speech_tokens": supervised,
            }
            if self.model_config.train_s3gen:
                record["speech_feat"] = own.speech_feat
                record["xvector"] = own.xvector.tolist()
            for name in extra_columns:
                record.setdefault(name, str(clip.extra.get(name, "")))
            yield record

    def write_dataset(self, splits: dict[str, list[Clip]], prompts: dict[str, Prompt],
                      heads: dict[str, Reference]) -> Path:
        import datasets

        extra_columns = sorted({k for clips in splits.values() for c in clips for k in c.extra})
        schema = self.features_schema(extra_columns)
        self.prepared_dir.mkdir(parents=True, exist_ok=True)
        for stale in [*self.prepared_dir.glob(".dataset.*"), *self.prepared_dir.glob(".arrow.*")]:  # a killed run's
            shutil.rmtree(stale, ignore_errors=True)
        final = self.prepared_dir / DATASET_DIRNAME
        with staged_directory(final) as staging, tempfile.TemporaryDirectory(prefix=".arrow.",
                                                                            dir=self.prepared_dir) as arrow:
            parts = {}
            for name, clips in splits.items():
                if not clips:
                    continue
                # Streamed to Arrow files in the staging folder: the split never has to fit in memory.
                parts[name] = datasets.Dataset.from_generator(
                    self.records, features=schema, cache_dir=arrow,
                    gen_kwargs={"clips": clips, "prompts": prompts, "heads": heads,
                                "extra_columns": tuple(extra_columns)},
                    fingerprint=content_digest(name, *(c.id for c in clips))[:16],
                )
            datasets.DatasetDict(parts).save_to_disk(str(staging))
        return final

    def run(self) -> PrepareResult:
        clips = self.collect_clips()
        if not clips:
            self.write_report({}, {})
            raise ValueError(
                f"No usable rows in {self.config.input_path}: all {self.rows_in} were rejected "
                f"(see {self.prepared_dir / REPORT_NAME})."
            )
        self.extract_features(clips)
        splits, left_out = self.split(clips)
        prompts, heads = self.plan(splits)
        self.extract_references(clips, {*heads.values(), *(p.clip_ids for p in prompts.values()
                                                          if p.source == "other")}, prompts)
        self.__dict__.pop("extractor", None)  # the encoders are not needed to write the dataset
        dataset_dir = self.write_dataset(splits, prompts, heads)
        summary = self.write_report(splits, prompts, left_out)
        return PrepareResult(dataset_dir=dataset_dir, summary=summary)

    # -- report ------------------------------------------------------------------------------------------------------------
    def sentence_report(self, splits: dict[str, list[Clip]], left_out: list[Clip]) -> dict[str, Any]:
        """How the splits were drawn and the sentence groups they hold: how many sentences, how many are read more
        than once, any sentence in two splits (none: the check of the rule), and the readings left out because a
        held-out speaker reads the same sentence."""
        split_of = {clip.id: name for name, clips in splits.items() for clip in clips}
        groups = sentence_groups([clip for clips in splits.values() for clip in clips])
        readings = {key: len(group) for key, group in groups.items()}
        shared = sorted(key for key, group in groups.items() if len({split_of[c.id] for c in group}) > 1)
        by_speaker = [f for f in ("heldout_speakers", "validation_speakers") if getattr(self.config, f)]
        return {"rule": "by sentence" + (f", {' and '.join(by_speaker)} by speaker" if by_speaker else ""),
                "groups": len(readings), "read_more_than_once": sum(1 for n in readings.values() if n > 1),
                "largest_group": max(readings.values(), default=0), "in_two_splits": len(shared),
                "in_two_splits_examples": shared[:5], "left_out_readings": len(left_out),
                "left_out_hours": round(sum(c.duration for c in left_out) / 3600, 4)}

    def prompt_lengths(self, splits: dict[str, list[Clip]], prompts: dict[str, Prompt]) -> dict[str, Any]:
        """The prompts' lengths in tokens per split (what T3 is conditioned on; a 6 s reference gives 150), how many
        are joined from several clips, and the speakers whose prompts fall short of `max_prompt_seconds` (too
        little audio to gather a whole reference) with their shortest prompt in seconds."""
        full = round(self.config.max_prompt_seconds * TOKENS_PER_SECOND)
        counted: dict[Reference | str, int] = {}

        def tokens(prompt: Prompt) -> int:
            key = prompt.clip_ids if prompt.source == "other" else f"tail:{prompt.clip_ids[0]}"
            if key not in counted:
                features = (self.reference_features(prompt.clip_ids) if prompt.source == "other"
                            else load_features(self.tail_path(prompt)))
                counted[key] = len(features.prompt_tokens)
            return counted[key]

        lengths, short = {}, {}
        for name, clips in splits.items():
            given = [(clip, prompts[clip.id]) for clip in clips if prompts[clip.id].source != "none"]
            if not given:
                continue
            counts = np.array([tokens(prompt) for _, prompt in given])
            lengths[name] = {"rows": len(given), "min": int(counts.min()), "median": float(np.median(counts)),
                             "mean": round(float(counts.mean()), 1), "max": int(counts.max()),
                             "full": int((counts >= full).sum()),
                             "joined": sum(1 for _, prompt in given if len(prompt.clip_ids) > 1)}
            for (clip, _), count in zip(given, counts):
                if count < full:
                    shortest = short.setdefault(name, {}).get(clip.speaker_id, full)
                    short[name][clip.speaker_id] = round(min(shortest, count) / TOKENS_PER_SECOND, 2)
        return {"prompt_tokens": lengths, "full_prompt_tokens": full, "speakers_short_of_prompt_audio": short}

    def write_report(self, splits: dict[str, list[Clip]], prompts: dict[str, Prompt],
                     left_out: list[Clip] = ()) -> dict[str, Any]:
        kept = [c for clips in splits.values() for c in clips]
        hours_accent: Counter = Counter()
        hours_speaker: Counter = Counter()
        clips_speaker: Counter = Counter()
        accent_of: dict[str, str] = {}
        for clip in kept:
            hours_accent[clip.accent or "unknown"] += clip.duration / 3600
            hours_speaker[clip.speaker_id] += clip.duration / 3600
            clips_speaker[clip.speaker_id] += 1
            accent_of[clip.speaker_id] = clip.accent or "unknown"
        summary = {
            "input": self.config.input_path,
            "base_model": self.model_config.base_model,
            "clips_in": self.rows_in,
            "kept": len(kept),
            "rejected": len(self.rejected),
            "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in self.rejected).items())),
            "splits": {name: len(clips) for name, clips in splits.items()},
            "hours": round(sum(c.duration for c in kept) / 3600, 4),
            "hours_per_accent": {k: round(v, 4) for k, v in sorted(hours_accent.items())},
            "speakers": {
                s: {"accent": accent_of[s], "clips": clips_speaker[s], "hours": round(hours_speaker[s], 4)}
                for s in sorted(clips_speaker)
            },
            "prompts": {source: {name: sum(1 for c in clips if prompts[c.id].source == source)
                                 for name, clips in splits.items()} for source in PROMPT_SOURCES},
            "left_out_of_training": sum(1 for c in splits.get("train", []) if prompts[c.id].source == "none"),
            "self_prompt": self.config.self_prompt,
            "trained_on_own_tail": sum(1 for c in splits.get("train", []) if prompts[c.id].source == "tail"),
            "sentences": self.sentence_report(splits, left_out),
            **self.prompt_lengths(splits, prompts),
            "s3gen_features": self.model_config.train_s3gen,
        }
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rejected)
        write_atomic(self.prepared_dir / REPORT_NAME, lines.encode())
        write_atomic(self.prepared_dir / SUMMARY_NAME, json.dumps(summary, indent=2, ensure_ascii=False).encode())
        write_atomic(self.prepared_dir / "summary.md", summary_table(summary).encode())
        fmt = self.config.format if self.config.format != "auto" else detect_format(self.config.input_path)
        settings = {**asdict(self.config), "format": fmt, **asdict(self.model_config)}
        write_atomic(self.prepared_dir / SETTINGS_NAME, json.dumps(settings, indent=2).encode())
        return summary


def sentence_groups(clips: list[Clip]) -> dict[str, list[Clip]]:
    """Clips grouped by sentence: two clips are one sentence when their normalised texts or their raw transcripts
    match as `text.sentence_key` compares them (so "$1.250" read as pesos and as soles, or "10:30" written two ways,
    stay together). Keyed by a member's normalised sentence."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for clip in clips:
        parent[root(f"raw:{sentence_key(clip.raw_text)}")] = root(f"text:{sentence_key(clip.text)}")
    groups: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        groups[root(f"text:{sentence_key(clip.text)}")].append(clip)
    return {key.split(":", 1)[1]: members for key, members in groups.items()}


def prepare_dataset(model_config: ModelConfig, data_config: DataConfig, progress: bool = True) -> PrepareResult:
    """Turns raw clips into the prepared feature dataset training reads.

    Runs the whole preparation (see the module docstring): rows validated (rejects to `rejected.jsonl` with their
    reason), audio cleaned, text normalised, features extracted with the base's own encoders, splits drawn by
    sentence, prompts built as a user's reference arrives. Everything is cached by content, so a rerun or a
    killed run recomputes nothing done.

    Args:
        model_config: The base checkpoint whose encoders extract the features (its `base_model`, and
            `train_s3gen` for S3Gen's mel and x-vector).
        data_config: Where the data comes from (`input_path`, `format`, the column names), where it goes
            (`prepared_dir`) and how it is cleaned and split.
        progress: Show progress bars.

    Returns:
        The dataset folder and the summary.
    """
    return Preparer(model_config, data_config, progress=progress).run()

