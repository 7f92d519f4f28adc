"""The project's targets besides pronunciation, measured: expressivity control kept, voices cloned from a few seconds.

- **Expressivity** ("conservar el control sobre la exageración emocional"): the same sentences at exaggeration
  0.25, 0.5 and 0.9; for each, the pitch spread (standard deviation of F0 in semitones over voiced frames, pYIN),
  the energy spread (standard deviation of frame level in dB over the frames within 40 dB of the loudest) and the
  speaking rate (letters, numbers spelled out, per second of speech). Upstream's base raises them with
  exaggeration; whether a fine-tune still does is the question (`rises`: each measure higher at 0.9 than at 0.25).
- **Cloning from a few seconds** ("clonar voces con pocos segundos de audio"): speaker similarity (resemblyzer)
  between each sentence spoken from a reference cut to 3, 6 and 10 s of its speaker's other audio and the
  sentence's own recording (the same yardstick for every length; a sentence is never spoken from its own audio).
  Where a speaker has less audio than asked, the reference is all there is and its length is recorded.

Both per system and per accent, in `results.json` (`measured_targets`), the report and `plots/expressivity.png`,
`plots/cloning.png`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.read_script import spoken_length

EXAGGERATIONS = (0.25, 0.5, 0.9)
REFERENCE_SECONDS = (3.0, 6.0, 10.0)
PROSODY_SR = 16_000
"""The rate pitch and energy are measured at."""
PROSODY = ("f0_spread", "energy_spread", "speaking_rate")
"""Semitones, dB, letters per second."""

Similarity = Callable[[Sequence[tuple[np.ndarray, np.ndarray]], int], list[float]]


def prosody(wav: np.ndarray, sample_rate: int, text: str | None = None) -> dict[str, float]:
    """Pitch spread (semitones), energy spread (dB) and, given the text, speaking rate (letters per second of
    speech) of one clip. NaN where the clip has no voiced frame."""
    import librosa

    from ..data.audio import resample

    sample_rate, wav = PROSODY_SR, resample(np.asarray(wav, np.float32), sample_rate, PROSODY_SR)
    hop = sample_rate // 100  # 10 ms
    # 64 ms frames: two periods of the lowest F0 searched; pYIN's cost grows with the frame, and speech needs no more.
    f0, voiced, _ = librosa.pyin(wav, fmin=60.0, fmax=600.0, sr=sample_rate, frame_length=1024, hop_length=hop,
                                 resolution=0.25)  # quarter-semitone bins: the spread, not the melody
    f0 = f0[voiced & np.isfinite(f0)]
    semitones = 12 * np.log2(f0 / 100.0)
    level = librosa.amplitude_to_db(librosa.feature.rms(y=wav, frame_length=4 * hop, hop_length=hop)[0], ref=1.0)
    speech = level[level > level.max() - 40.0]
    out = {"f0_spread": float(semitones.std()) if semitones.size > 1 else float("nan"),
           "energy_spread": float(speech.std()) if speech.size > 1 else float("nan")}
    if text is not None:
        seconds = speech.size * hop / sample_rate
        out["speaking_rate"] = spoken_length(text) / seconds if seconds else float("nan")
    return out


def _mean(values) -> float:
    values = [v for v in values if v == v]  # NaN-free
    return float(np.mean(values)) if values else float("nan")


def expressivity(synthesize: Callable[[Any, float], np.ndarray], items: Sequence[Any],
                 sample_rate: int) -> dict[str, Any]:
    """`synthesize(item, exaggeration) -> wav` for each item at each of `EXAGGERATIONS`; the measures' means per
    exaggeration, overall and per accent, and whether each rises from the lowest exaggeration to the highest."""
    by_accent: dict[str, dict[float, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        for exaggeration in EXAGGERATIONS:
            by_accent[item.accent][exaggeration].append(prosody(synthesize(item, exaggeration), sample_rate,
                                                                item.text))

    def summary(groups: dict[float, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
        return {str(e): {k: _mean(m[k] for m in groups[e]) for k in PROSODY} for e in EXAGGERATIONS}

    overall: dict[float, list[dict[str, float]]] = defaultdict(list)
    for groups in by_accent.values():
        for exaggeration, measures in groups.items():
            overall[exaggeration] += measures
    table = summary(overall)
    low, high = table[str(EXAGGERATIONS[0])], table[str(EXAGGERATIONS[-1])]
    return {"by_exaggeration": table, "rises": {k: bool(high[k] > low[k]) for k in PROSODY},
            "per_accent": {accent: summary(groups) for accent, groups in sorted(by_accent.items())}}


def reference_of(items: Sequence[Any], item: Any, seconds: float) -> tuple[np.ndarray, float]:
    """`seconds` of `item`'s speaker's other audio, never the item's own recording: its own reference (joined from
    the speaker's other clips, `reference_ids`), then the speaker's other recordings among `items` that are not in
    it, joined as every reference is (`join_clips`); shorter when the speaker has less. Returns the audio and its
    length in seconds. The other items' references are not used: they may hold this item's recording."""
    from ..data.references import join_clips

    others = [np.asarray(other.truth) for other in items if other.speaker_id == item.speaker_id
              and other.id != item.id and other.id not in item.reference_ids]
    joined = join_clips([np.asarray(item.reference), *others], item.sample_rate)[: int(seconds * item.sample_rate)]
    return joined, len(joined) / item.sample_rate


def cloning_by_reference_length(synthesize: Callable[[Any, np.ndarray], np.ndarray], items: Sequence[Any],
                                sample_rate: int, similarity: Similarity,
                                pool: Sequence[Any] | None = None) -> dict[str, Any]:
    """`synthesize(item, reference) -> wav` with references of each of `REFERENCE_SECONDS`, taken from `pool`
    (the whole test set; default `items`); the similarity of the result to the item's own recording, per length,
    overall and per accent, and the references' real lengths."""
    from ..data.audio import resample

    rows = []
    for item in items:
        longest, _ = reference_of(items if pool is None else pool, item, max(REFERENCE_SECONDS))
        for seconds in REFERENCE_SECONDS:
            reference = longest[: int(seconds * item.sample_rate)]
            actual = len(reference) / item.sample_rate
            wav = synthesize(item, reference)
            truth = resample(np.asarray(item.truth, np.float32), item.sample_rate, sample_rate)
            rows.append((item.accent, seconds, actual, wav, truth))
    scores = similarity([(wav, truth) for *_, wav, truth in rows], sample_rate)

    def summary(selected) -> dict[str, dict[str, float]]:
        return {str(s): {"speaker_sim": _mean(score for (_, sec, *_), score in selected if sec == s),
                         "reference_seconds": _mean(actual for (_, sec, actual, *_), _ in selected if sec == s)}
                for s in REFERENCE_SECONDS}

    paired = list(zip(rows, scores))
    return {"by_reference_seconds": summary(paired),
            "per_accent": {accent: summary([p for p in paired if p[0][0] == accent])
                           for accent in sorted({row[0] for row in rows})}}


def write_target_plots(targets: dict[str, Any], plots) -> None:
    """`expressivity.png` (each measure against exaggeration, a line per system) and `cloning.png` (similarity
    against reference length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if targets.get("expressivity"):
        fig, axes = plt.subplots(1, len(PROSODY), figsize=(4 * len(PROSODY), 3.2))
        for ax, key in zip(axes, PROSODY):
            for system, result in targets["expressivity"].items():
                ax.plot(EXAGGERATIONS, [result["by_exaggeration"][str(e)][key] for e in EXAGGERATIONS], marker="o",
                        label=system)
            ax.set_xlabel("exaggeration")
            ax.set_title({"f0_spread": "F0 spread (semitones)", "energy_spread": "energy spread (dB)",
                          "speaking_rate": "letters per second"}[key])
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plots / "expressivity.png", dpi=100)
        plt.close(fig)
    if targets.get("cloning"):
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for system, result in targets["cloning"].items():
            ax.plot(REFERENCE_SECONDS, [result["by_reference_seconds"][str(s)]["speaker_sim"]
                                        for s in REFERENCE_SECONDS], marker="o", label=system)
        ax.set_xlabel("reference (s)")
        ax.set_title("speaker similarity")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(plots / "cloning.png", dpi=100)
        plt.close(fig)


def targets_report(targets: dict[str, Any]) -> list[str]:
    """The report's section for the targets (markdown lines)."""
    lines = ["## The project's targets: expressivity and cloning", ""]
    if targets.get("expressivity"):
        lines += ["Expressivity control kept: the same sentences at each exaggeration (F0 spread in semitones, "
                  "energy spread in dB, letters per second). `rises`: higher at 0.9 than at 0.25.", "",
                  "| system | exaggeration | F0 spread | energy spread | rate |", "|---|---|---:|---:|---:|"]
        for system, result in targets["expressivity"].items():
            for e in EXAGGERATIONS:
                row = result["by_exaggeration"][str(e)]
                lines.append(f"| {system} | {e} | {row['f0_spread']:.2f} | {row['energy_spread']:.2f} | "
                             f"{row['speaking_rate']:.1f} |")
            rises = ", ".join(f"{k} {'rises' if v else 'does not rise'}" for k, v in result["rises"].items())
            lines.append(f"| {system} | | {rises} | | |")
        lines += ["", "![expressivity](plots/expressivity.png)", ""]
    if targets.get("cloning"):
        lines += ["Cloning from a few seconds: similarity to the sentence's own recording, the voice taken from "
                  "references of each length (the length used, where the speaker had less, in brackets).", "",
                  "| system | " + " | ".join(f"{s:g} s" for s in REFERENCE_SECONDS) + " |",
                  "|---|" + "---:|" * len(REFERENCE_SECONDS)]
        for system, result in targets["cloning"].items():
            cells = []
            for s in REFERENCE_SECONDS:
                row = result["by_reference_seconds"][str(s)]
                short = f" ({row['reference_seconds']:.1f} s)" if row["reference_seconds"] < s - 0.05 else ""
                cells.append(f"{row['speaker_sim']:.3f}{short}")
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines += ["", "![cloning](plots/cloning.png)", ""]
    return lines
