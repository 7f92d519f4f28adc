"""The project's targets and the evaluation report: report.md (tables per system and accent) and plots/."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import TOKENS_PER_SECOND
from .accent import accent_report, write_confusion_plot
from .targets import targets_report, write_target_plots

logger = logging.getLogger(__name__)
TARGETS = {  # the project's targets: metric -> (comparison, value)
    "wer_spanish": ("<", 0.15),
    "mos": (">", 3.5),
    "speaker_sim": (">", 0.85),
    "rtf": ("<", 1.0),
}


SPLIT_CAVEATS = {
    "validation": "its sentences were held out from training but chose the checkpoint, so its figures flatter it",
    "train": "the model learnt these very sentences, so its figures flatter it",
}
"""Why scores on a split other than `test` say less (the report's first line)."""


ALIGNMENT_WHY = ("the adapter changed the attention of the layers upstream's alignment heuristics read (heads of "
                 "layers 9, 12 and 13), whose thresholds were set on the base's attention, so they may misjudge where "
                 "the speech is in the text")


def alignment_note(systems: list[str]) -> list[str]:
    """Which alignment setting `finetuned` ran with and why, where the evaluation scored the other one beside it
    (`finetuned_alignment_on` / `_off`: the adapter changed the attention the heuristics read)."""
    if "finetuned_alignment_on" in systems:
        return [f"`finetuned` ran without upstream's alignment heuristics, as this model's synthesis does by default: "
                f"{ALIGNMENT_WHY} (upstream main decodes every model without them). `finetuned_alignment_on` is the "
                "same model with them on the same sentences, voices and seeds.", ""]
    if "finetuned_alignment_off" in systems:
        return [f"`finetuned` ran with upstream's alignment heuristics, as asked (`--alignment on`; this model's "
                f"synthesis runs without them by default: {ALIGNMENT_WHY}). `finetuned_alignment_off` is the same "
                "model without them on the same sentences, voices and seeds.", ""]
    return []


def passes(metric: str, value: float) -> bool:
    comparison, target = TARGETS[metric]
    return value < target if comparison == "<" else value > target


def write_report(results: dict[str, Any], output_dir: Path) -> None:
    systems = list(results["systems"])
    lines = [f"# Evaluation of `{results['checkpoint']}`", ""]
    if results.get("split") not in (None, "test"):
        lines[0] = (f"**Scored on the `{results['split']}` split, not a held-out test split** (`--split "
                    f"{results['split']}`): {SPLIT_CAVEATS.get(results['split'], 'read its figures knowingly')}.")
        lines += [f"# Evaluation of `{results['checkpoint']}`", ""]
    lines += [f"Test data: `{results['test_data']}` ({results['n_sentences']} sentences). Device: {results['device']}.",
              ""]
    if results.get("sentences_without_reference") and not results.get("protocol"):
        lines += [f"{len(results['sentences_without_reference'])} test sentences were left out: their speaker has no "
                  "other clip to take the voice from (a sentence is never spoken from its own audio).", ""]
    if results.get("protocol"):
        protocol = results["protocol"]
        lines += [f"Protocol: **{protocol['name']}** on the list `{protocol['list']}` (sha256 "
                  f"{protocol['list_sha256']}…), each sentence spoken by a held-out speaker of its accent from the test "
                  f"data. `wer_seed_tts_eval`: {protocol['asr_model']} transcripts, the protocol's normalisation, "
                  "averaged per sentence; `speaker_sim_seed_tts_eval`: WavLM-Large + ECAPA-TDNN "
                  f"(`{protocol['sv_checkpoint']}`) against the reference. Figures on the same list, test data and "
                  "checkpoints compare across machines and papers.", ""]
        if results.get("sentences_without_reference"):
            lines += [f"{len(results['sentences_without_reference'])} sentences of the list were left out: the test "
                      "data has no speaker of their accent.", ""]
    if results.get("sentences_without_adapter"):
        lines += [f"{len(results['sentences_without_adapter'])} test sentences were left out: their accent has no "
                  "adapter among the checkpoint's per-accent adapters.", ""]
    if results.get("decoding"):
        lines += [f"Decoding: {results['decoding']}.", ""]
    if results.get("max_new_tokens"):
        cap = results["max_new_tokens"]
        lines += [f"Every system's sentences were capped at {cap} speech tokens ({cap / TOKENS_PER_SECOND:g} s, "
                  "`--max_new_tokens`): a sentence that had not stopped by then was cut there.", ""]
    lines += alignment_note(systems)
    if "finetuned_fp32" in systems:  # the fast settings beside upstream's, on the same sentences, voices and seeds
        cfg = results.get("cfg_weight", 0.5)
        fast = ", ".join(part for part in (f"T3 {results.get('mode')}", f"cfg_weight {cfg}" if cfg != 0.5 else "",
                                           results.get("s3gen_changes")) if part)
        lines += [f"`finetuned` ran at {fast}; `finetuned_fp32` is the same model at upstream's settings (T3 fp32, "
                  "cfg_weight 0.5, its own S3Gen at 10 fp32 steps) on the same sentences, voices and seeds: judge "
                  "the fast settings by the difference.", ""]
    header = "| metric | target | " + " | ".join(systems) + " |"
    lines += [header, "|" + "---|" * (len(systems) + 2)]
    for metric in ("wer_spanish", "cer_spanish", "wer_whisper", "cer_whisper", "wer_seed_tts_eval", "speaker_sim",
                   "speaker_sim_wavlm", "speaker_sim_seed_tts_eval", "mos", "utmos", "accent_accuracy", "accent_prob", "rtf"):
        if not any(metric in results["systems"][s]["aggregate"] for s in systems):
            continue
        target = f"{TARGETS[metric][0]} {TARGETS[metric][1]}" if metric in TARGETS else ""
        cells = []
        for system in systems:
            value = results["systems"][system]["aggregate"].get(metric)
            if value is None:
                cells.append("–")
            elif metric in TARGETS and system != "ground_truth":
                cells.append(f"{value:.3f} {'pass' if passes(metric, value) else 'FAIL'}")
            else:
                cells.append(f"{value:.3f}")
        lines.append(f"| {metric} | {target} | " + " | ".join(cells) + " |")
    lines += ["", "WER/CER `spanish` keeps accents and ñ; `whisper` is Whisper's basic normaliser without diacritics.",
              "MOS is DNSMOS overall; UTMOS is a second predictor (both proxies: see the human MOS kit).",
              "accent_accuracy / accent_prob: the accent classifier's verdict on each sentence's own accent."]
    for name, message in results.get("skipped", {}).items():
        lines.append(f"\n**{name} skipped**: {message}")
    lines += ["", "## Per accent", ""]
    for system in systems:
        for accent, values in sorted(results["systems"][system]["per_accent"].items()):
            shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items() if k != "n")
            lines.append(f"- {system}, {accent or 'unknown'} ({values['n']}): {shown}")
    lines += ["", "![per accent](plots/per_accent.png)", "", "![distributions](plots/distributions.png)", ""]
    lines += accent_report(results)
    if results.get("measured_targets"):
        lines += targets_report(results["measured_targets"])
    (output_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")


def write_plots(results: dict[str, Any], output_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = output_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    systems = list(results["systems"])
    keys = [k for k in ("wer_spanish", "speaker_sim", "mos", "rtf")
            if any(k in results["systems"][s]["aggregate"] for s in systems)]
    accents = sorted({a for s in systems for a in results["systems"][s]["per_accent"]})
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(4 * max(1, len(keys)), 3.2), squeeze=False)
    width = 0.8 / max(1, len(systems))
    for ax, key in zip(axes[0], keys):
        for i, system in enumerate(systems):
            values = [results["systems"][system]["per_accent"].get(a, {}).get(key, np.nan) for a in accents]
            ax.bar(np.arange(len(accents)) + i * width, values, width, label=system)
        if key in TARGETS:
            ax.axhline(TARGETS[key][1], color="k", linestyle="--", linewidth=0.8)
        ax.set_xticks(np.arange(len(accents)) + width * (len(systems) - 1) / 2, [a or "?" for a in accents])
        ax.set_title(key)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots / "per_accent.png", dpi=100)
    plt.close(fig)

    dist_keys = [k for k in ("speaker_sim", "mos", "cer_spanish") if any(
        k in s for system in systems for s in results["systems"][system]["samples"])]
    fig, axes = plt.subplots(1, max(1, len(dist_keys)), figsize=(4 * max(1, len(dist_keys)), 3.2), squeeze=False)
    for ax, key in zip(axes[0], dist_keys):
        for system in systems:
            values = [s[key] for s in results["systems"][system]["samples"] if key in s]
            if values:
                ax.hist(values, bins=10, alpha=0.5, label=system)
        ax.set_title(key)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots / "distributions.png", dpi=100)
    plt.close(fig)
    write_confusion_plot(results, plots)
    if results.get("measured_targets"):
        write_target_plots(results["measured_targets"], plots)
