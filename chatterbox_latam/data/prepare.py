"""Raw recordings -> validated, cleaned clips -> cached features -> a map-style prepared dataset with splits.

`prepare_dataset` is the library side of `training/prepare_data.py`. It never stops on a bad row: each one is
recorded in `<prepared_dir>/rejected.jsonl` with its reason, and every good row is kept. Work is cached by
content (cleaned clips by source bytes and cleaning settings; features by clip and checkpoint), each cache file
written atomically, so a rerun recomputes nothing and a killed run continues where it stopped. The dataset is
assembled in a staging folder and renamed into place, so `<prepared_dir>/dataset` is always complete.

Columns of every split:
    id, source, audio (cleaned, 24 kHz FLAC), text (what T3 reads), raw_text, speaker_id, accent, duration,
    speech_tokens (S3, 25 Hz), speaker_emb (VoiceEncoder, 256, unit norm),
    own_prompt_tokens (this clip as a reference: the prompt tokens of its first 6 s, tokenised alone),
    prompt_id, prompt_source, prompt_speech_tokens, prompt_speaker_emb (the row's prompt, see below),
    supervised_speech_tokens (speech tokens that carry the loss),
    and with S3Gen features: speech_feat (2T x 80 mel at 24 kHz), xvector (CAMPPlus, 192);
    plus any extra columns of the source.

No clip is its own prompt. `prompt_source` says where a row's prompt comes from:
- 'other': another clip of the same speaker in the same split (validation and test rows may take a training
  clip: a reference is no target, so nothing leaks into training). Training draws it anew each epoch from the
  speaker's clips (`collator.PromptPool`); this column is the prepared default (evaluation, validation loss).
- 'tail': the speaker's only clip lends its last part (`self_prompt_min_seconds`); the loss covers only the
  speech before it (`supervised_speech_tokens`), so nothing the prompt holds is ever a target.
- 'none': a lone clip too short for that: left out of training and of evaluation, counted in the summary.
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

import soundfile as sf
from tqdm.auto import tqdm

from ..config import DataConfig, ModelConfig
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
from .features import FeatureExtractor, length_batches, load_features, save_atomic
from .sources import SourceRow, detect_format, iter_rows
from .text import text_for_model, unknown_graphemes

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


@dataclass
class Prompt:
    """Where a row's prompt comes from (`PROMPT_SOURCES`), its clip, and for 'tail' the seconds it takes."""

    source: str
    clip_id: str = ""
    tail_seconds: float = 0.0


@dataclass
class PrepareResult:
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
            accent=row.accent or "", duration=round(duration, 3), extra=row.extra,
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
    def assign_prompts(self, splits: dict[str, list[Clip]]) -> dict[str, Prompt]:
        """clip id -> its prompt (see the module docstring): another clip of the speaker in the same split (for
        validation and test rows, else a training clip), else its own tail when long enough, else none."""
        by_split: dict[tuple[str, str], list[str]] = defaultdict(list)
        for name, clips in splits.items():
            for clip in clips:
                by_split[(name, clip.speaker_id)].append(clip.id)
        prompts = {}
        for name, clips in splits.items():
            for clip in clips:
                others = sorted(i for i in by_split[(name, clip.speaker_id)] if i != clip.id)
                if not others and name != "train":
                    others = sorted(by_split.get(("train", clip.speaker_id), []))
                tail = min(self.config.max_prompt_seconds, clip.duration / 2)
                if others:
                    # Seeded per clip, so a clip's prompt does not change when other speakers' rows come or go.
                    rng = random.Random(f"{self.config.split_seed}:{clip.id}")
                    prompts[clip.id] = Prompt("other", rng.choice(others))
                elif tail >= self.config.self_prompt_min_seconds:
                    prompts[clip.id] = Prompt("tail", clip.id, round(tail, 2))
                else:
                    prompts[clip.id] = Prompt("none")
        return prompts

    def tail_path(self, prompt: Prompt) -> Path:
        return self.feature_path(prompt.clip_id).with_suffix(f".tail{prompt.tail_seconds:.2f}.safetensors")

    def extract_tail_prompts(self, clips: list[Clip], prompts: dict[str, Prompt]) -> None:
        """Reference features (prompt tokens, speaker embedding) of the last part of each clip that prompts
        itself, cached like the other features."""
        todo = [c for c in clips if prompts[c.id].source == "tail" and not self.tail_path(prompts[c.id]).exists()]
        if not todo:
            return
        seconds = [prompts[c.id].tail_seconds for c in todo]
        with tqdm(total=len(todo), desc="own-clip prompts", unit="clip", disable=not self.progress) as bar:
            for batch in length_batches(seconds, self.config.feature_batch_seconds):
                tails = []
                for i in batch:
                    wav, rate = sf.read(todo[i].clean_path, dtype="float32")
                    tails.append(wav[len(wav) - int(seconds[i] * rate):])
                for i, features in zip(batch, self.extractor.reference_features(tails)):
                    save_atomic(features, self.tail_path(prompts[todo[i].id]))
                bar.update(len(batch))

    def split(self, clips: list[Clip]) -> dict[str, list[Clip]]:
        rng = random.Random(self.config.split_seed)
        config = self.config
        if config.heldout_speakers:
            speakers = {c.speaker_id for c in clips}
            unknown = sorted(set(config.heldout_speakers) - speakers)
            if unknown:
                raise ValueError(f"heldout_speakers {unknown} have no kept clips; speakers are {sorted(speakers)}.")
            test = [c for c in clips if c.speaker_id in config.heldout_speakers]
            rest = [c for c in clips if c.speaker_id not in config.heldout_speakers]
            test_ids = {c.id for c in test}
        else:
            rest = list(clips)
            test_ids = set()
        ids = sorted(c.id for c in rest)
        rng.shuffle(ids)

        def share(fraction: float) -> int:
            return max(1, round(len(clips) * fraction)) if fraction > 0 and len(ids) >= 3 else 0

        if not config.heldout_speakers:
            test_ids = set(ids[: share(config.test_size)])
            ids = ids[len(test_ids):]
        val_ids = set(ids[: share(config.validation_size)])
        splits = {"train": [], "validation": [], "test": []}
        for clip in sorted(clips, key=lambda c: (c.speaker_id, c.source)):
            name = "test" if clip.id in test_ids else "validation" if clip.id in val_ids else "train"
            splits[name].append(clip)
        return splits

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
            "own_prompt_tokens": datasets.List(datasets.Value("int32")),
            "prompt_id": datasets.Value("string"),
            "prompt_source": datasets.Value("string"),
            "prompt_speech_tokens": datasets.List(datasets.Value("int32")),
            "prompt_speaker_emb": datasets.List(datasets.Value("float32"), length=256),
            "supervised_speech_tokens": datasets.Value("int32"),
        }
        if self.model_config.train_s3gen:
            columns["speech_feat"] = datasets.Array2D(shape=(None, 80), dtype="float32")
            columns["xvector"] = datasets.List(datasets.Value("float32"), length=192)
        for name in extra_columns:
            columns.setdefault(name, datasets.Value("string"))
        return datasets.Features(columns)

    def records(self, clips: list[Clip], prompts: dict[str, Prompt], extra_columns: list[str]):
        for clip in clips:
            own = load_features(self.feature_path(clip.id))
            prompt = prompts[clip.id]
            supervised = len(own.speech_tokens)
            if prompt.source == "other":
                reference = load_features(self.feature_path(prompt.clip_id))
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
                "own_prompt_tokens": own.prompt_tokens.tolist(),
                "prompt_id": prompt.clip_id, "prompt_source": prompt.source,
                "prompt_speech_tokens": [] if reference is None else reference.prompt_tokens.tolist(),
                "prompt_speaker_emb": [0.0] * 256 if reference is None else reference.speaker_emb.tolist(),
                "supervised_speech_tokens": supervised,
            }
            if self.model_config.train_s3gen:
                record["speech_feat"] = own.speech_feat
                record["xvector"] = own.xvector.tolist()
            for name in extra_columns:
                record.setdefault(name, str(clip.extra.get(name, "")))
            yield record

    def write_dataset(self, splits: dict[str, list[Clip]], prompts: dict[str, Prompt]) -> Path:
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
                    gen_kwargs={"clips": clips, "prompts": prompts, "extra_columns": tuple(extra_columns)},
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
        splits = self.split(clips)
        prompts = self.assign_prompts(splits)
        self.extract_tail_prompts(clips, prompts)
        self.__dict__.pop("extractor", None)  # the encoders are not needed to write the dataset
        dataset_dir = self.write_dataset(splits, prompts)
        summary = self.write_report(splits, prompts)
        return PrepareResult(dataset_dir=dataset_dir, summary=summary)

    # -- report ------------------------------------------------------------------------------------------------------------
    def write_report(self, splits: dict[str, list[Clip]], prompts: dict[str, Prompt]) -> dict[str, Any]:
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


def prepare_dataset(model_config: ModelConfig, data_config: DataConfig, progress: bool = True) -> PrepareResult:
    """Runs the whole preparation (see the module docstring) and returns the dataset folder and the summary."""
    return Preparer(model_config, data_config, progress=progress).run()

