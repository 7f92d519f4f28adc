"""Reading a prepared dataset (`prepare` writes it): its file names, the splits, the row index, the summary table,
and the text tokens training feeds."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .text import encode_text

logger = logging.getLogger(__name__)

DATASET_DIRNAME = "dataset"
REPORT_NAME = "rejected.jsonl"
SUMMARY_NAME = "summary.json"
SETTINGS_NAME = "settings.json"


def summary_table(summary: dict[str, Any]) -> str:
    """The end-of-run table: clips in, kept, rejected by reason, hours per accent and per speaker."""
    out = [
        "| | clips |", "|---|---:|",
        f"| in | {summary['clips_in']} |", f"| kept | {summary['kept']} |", f"| rejected | {summary['rejected']} |",
    ]
    out += [f"| rejected: {reason} | {n} |" for reason, n in summary["rejected_by_reason"].items()]
    out += [f"| split: {name} | {n} |" for name, n in summary["splits"].items()]
    prompts = summary.get("prompts", {})
    out += [f"| prompts from {PROMPT_LABELS[source]} | {sum(prompts[source].values())} |" for source in PROMPT_SOURCES
            if source in prompts]
    if "left_out_of_training" in summary:
        lone = ("a speaker's only clip; `self_prompt: true` trains the long ones on their own last part"
                if not summary.get("self_prompt") else "a lone clip too short to prompt itself")
        out.append(f"| left out of training ({lone}) | {summary['left_out_of_training']} |")
    if summary.get("trained_on_own_tail"):
        out.append(f"| trained with their own last part as prompt (stop token not supervised) | "
                   f"{summary['trained_on_own_tail']} |")
    sentences = summary.get("sentences")
    if sentences:
        out += ["", f"Splits drawn {sentences['rule']}: {sentences['groups']} sentences, "
                    f"{sentences['read_more_than_once']} read more than once (the most: {sentences['largest_group']} "
                    f"times), {sentences['in_two_splits']} in two splits"
                    + (f" (e.g. {', '.join(repr(s) for s in sentences['in_two_splits_examples'])})"
                       if sentences["in_two_splits"] else "") + "."]
        if sentences.get("left_out_readings"):
            out[-1] += (f" {sentences['left_out_readings']} readings ({sentences['left_out_hours']:.4f} h) by other "
                        "speakers of sentences a held-out speaker reads are left out: no split trains on, or chooses "
                        "the checkpoint by, a sentence another split is scored on.")
    if summary.get("prompt_tokens"):
        full = summary["full_prompt_tokens"]
        out += ["", f"| prompt tokens ({full} = a whole reference) | rows | min | median | mean | max | {full} | "
                    "joined from several clips |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        out += [f"| {name} | {v['rows']} | {v['min']} | {v['median']:g} | {v['mean']:g} | {v['max']} | {v['full']} | "
                f"{v['joined']} |" for name, v in summary["prompt_tokens"].items()]
        for name, speakers in summary.get("speakers_short_of_prompt_audio", {}).items():
            listed = ", ".join(f"{speaker} ({seconds:g} s)" for speaker, seconds in speakers.items())
            out.append(f"\nShorter prompts in {name} (too little audio of the speaker for a whole reference; the "
                       f"shortest prompt each): {listed}.")
    out += ["", "| accent | hours |", "|---|---:|"]
    out += [f"| {accent} | {hours:.4f} |" for accent, hours in summary["hours_per_accent"].items()]
    out += ["", "| speaker | accent | clips | hours |", "|---|---|---:|---:|"]
    out += [f"| {s} | {v['accent']} | {v['clips']} | {v['hours']:.4f} |" for s, v in summary["speakers"].items()]
    return "\n".join(out) + "\n"


PROMPT_LABELS = {"other": "other clips of the speaker", "tail": "the clip's own last part", "none": "nowhere"}


def load_prepared(prepared_dir: str | os.PathLike):
    """The prepared dataset, as `prepare_dataset` wrote it.

    Args:
        prepared_dir: The preparation's output folder (`data.prepared_dir`), or its `dataset/` folder.

    Returns:
        A `datasets.DatasetDict` with the `train`, `validation` and `test` splits that preparation drew (map-style,
        Arrow on disk).

    Raises:
        FileNotFoundError: No prepared dataset is there (the message says how to prepare one).
        ValueError: The folder holds another layout of prompt columns; prepare it again (the cache is reused).
    """
    import datasets

    path = Path(prepared_dir)
    if (path / DATASET_DIRNAME / "dataset_dict.json").exists():
        path = path / DATASET_DIRNAME
    if not (path / "dataset_dict.json").exists():
        raise FileNotFoundError(
            f"No prepared dataset in {prepared_dir}: run `python training/prepare_data.py --config RECIPE` first."
        )
    dataset = datasets.load_from_disk(str(path))
    columns = next(iter(dataset.values())).column_names if len(dataset) else []
    if "prompt_id" in columns and "prompt_ids" not in columns:
        raise ValueError(f"{prepared_dir} holds the old prompt columns (prompt_id: one clip as each prompt, splits "
                         "drawn by clip): prepare it again with `python training/prepare_data.py --config RECIPE` "
                         "(its feature cache is reused).")
    return dataset


def row_index(dataset) -> dict[str, tuple[str, int]]:
    """clip id -> (split, row) over every split: how a row's `prompt_ids` find their clips."""
    return {row_id: (name, i) for name, split in dataset.items() for i, row_id in enumerate(split["id"])}


def reference_audio(dataset, where: dict[str, tuple[str, int]], clip_ids: list[str]) -> tuple[np.ndarray, int]:
    """A row's reference recording: its `prompt_ids` clips joined as preparation joined them
    (`references.join_clips`), mono float32, and its sample rate."""
    from .references import join_clips

    wavs, rate = [], None
    for clip_id in clip_ids:
        split, row = where[clip_id]
        wav, rate = mono_samples(dataset[split][row]["audio"])
        wavs.append(wav)
    return join_clips(wavs, rate), rate


def mono_samples(audio) -> tuple[np.ndarray, int]:
    """A decoded `Audio` cell (datasets' lazy decoder) as mono float32 and its sample rate."""
    decoded = audio.get_all_samples()
    return decoded.data.mean(0).numpy().astype(np.float32), decoded.sample_rate


def tokenize_dataset(dataset, tokenizer, language: str):
    """Adds `text_tokens` (the grapheme tokenizer's ids with the language tag) to every split, once."""
    def tokenize(batch):
        return {"text_tokens": [encode_text(tokenizer, text, language) for text in batch["text"]]}

    return dataset.map(tokenize, batched=True, desc="tokenize text")


PROMPT_SOURCES = ("other", "tail", "none")
