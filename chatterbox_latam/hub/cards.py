"""Hub cards rendered from the templates shipped with the package (`hub_cards/`, `chatterbox_latam.hub_cards`).

Cards are `huggingface_hub` `DatasetCard` / `ModelCard` objects rendered from the Jinja templates in `hub_cards/`
with typed metadata (`DatasetCardData`, `ModelCardData` with a `model-index` built from the evaluation's
results.json), validated by the Hub before anything is uploaded. A model push is one commit: the weights, the card
and the evaluation report together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..constants import ACCENT_NAMES, S3GEN_SR
from ..data.dataset import summary_table

CARDS_PACKAGE = "chatterbox_latam.hub_cards"
"""Where the card templates are: the repository's `hub_cards/`, which setup.py maps onto this package name (in an
editable install and in a wheel alike)."""


def card_template(name: str) -> str:
    """The text of the card template `name` (e.g. 'model_card.md'), read through the package's resources."""
    from importlib import resources

    try:
        return (resources.files(CARDS_PACKAGE) / name).read_text(encoding="utf-8")
    except ModuleNotFoundError as error:
        raise HubError(f"The card templates ({CARDS_PACKAGE}, the repository's hub_cards/) are not installed: "
                       "reinstall the package (`make install`, or `pip install -e .` in a checkout).") from error

# Licences of the sources the project reads (OpenSLR's Latin-American sets are CC BY-SA 4.0; Common Voice CC0).
SOURCE_LICENSES = {"openslr": "cc-by-sa-4.0", "commonvoice": "cc0-1.0"}


def _size_category(n: int) -> str:
    for limit, name in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if n < limit:
            return name
    return "n>1M"


def render_dataset_card(summary: dict[str, Any], repo_id: str, settings: dict[str, Any] | None = None,
                        source_format: str | None = None, license: str | None = None):
    """The prepared dataset's card: metadata (language es, accents, licence, size, task) and a readable summary.

    Args:
        summary: The preparation's `summary.json`.
        repo_id: The dataset's repo id, named in the card's loading example.
        settings: The preparation's `settings.json` (how the data was cleaned and split).
        source_format: The preparation's `format`: sets the default licence (`openslr`: CC BY-SA 4.0,
            `commonvoice`: CC0).
        license: The licence id, over the source's.

    Returns:
        A `huggingface_hub.DatasetCard`, rendered from `hub_cards/dataset_card.md`.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    settings = settings or {}
    license = license or SOURCE_LICENSES.get(source_format or "", "other")
    accents = sorted(a for a in summary["hours_per_accent"] if a != "unknown")
    sources = [{"name": summary["input"], "license": license}]
    card_data = DatasetCardData(
        language=["es"],
        license=license,
        pretty_name=f"Chatterbox ES-LATAM prepared speech ({', '.join(accents) or 'es'})",
        size_categories=[_size_category(summary["kept"])],
        task_categories=["text-to-speech"],
        source_datasets=[summary["input"]] if "/" in str(summary["input"]) and not os.path.isdir(summary["input"]) else None,
        tags=["chatterbox", "latin-american-spanish", *[f"accent-{a}" for a in accents]],
    )
    return DatasetCard.from_template(
        card_data,
        template_str=card_template("dataset_card.md"),
        pretty_name=card_data.pretty_name,
        repo_id=repo_id,
        summary_table=summary_table(summary),
        sources=sources,
        input=summary["input"],
        base_model=summary["base_model"],
        rejected=summary["rejected"],
        rejected_by_reason=summary["rejected_by_reason"],
        s3gen_features=summary["s3gen_features"],
        sampling_rate=settings.get("sampling_rate", S3GEN_SR),
        target_loudness=f"{settings['target_loudness']} LUFS" if settings.get("target_loudness") is not None else "source level",
        min_audio_length=settings.get("min_audio_length", "?"),
        max_audio_length=settings.get("max_audio_length", "?"),
    )


# results.json key -> (model-index metric type, readable name)
MODEL_INDEX_METRICS = {
    "wer_spanish": ("wer", "WER (Spanish normalisation)"),
    "cer_spanish": ("cer", "CER (Spanish normalisation)"),
    "wer_whisper": ("wer", "WER (Whisper basic normalisation)"),
    "cer_whisper": ("cer", "CER (Whisper basic normalisation)"),
    "speaker_sim": ("speaker_similarity", "Speaker similarity (Resemblyzer)"),
    "speaker_sim_wavlm": ("speaker_similarity", "Speaker similarity (WavLM)"),
    "wer_seed_tts_eval": ("wer", "WER (seed-tts-eval protocol, Whisper-large-v3)"),
    "speaker_sim_seed_tts_eval": ("speaker_similarity", "SIM (seed-tts-eval protocol, WavLM-Large + ECAPA-TDNN)"),
    "accent_accuracy": ("accuracy", "Accent identification accuracy"),
    "accent_prob": ("accent_probability", "Probability of the target accent"),
    "mos": ("dnsmos", "DNSMOS (overall)"),
    "utmos": ("utmos", "UTMOS"),
    "rtf": ("rtf", "Real-time factor"),
}


def evaluation_table(results: dict[str, Any]) -> str:
    """The evaluation's aggregate numbers as a markdown table, one column per system, with the project's targets."""
    from ..evaluation.report import TARGETS, passes

    systems = list(results["systems"])
    keys = [k for k in MODEL_INDEX_METRICS if any(k in results["systems"][s]["aggregate"] for s in systems)]
    lines = ["| metric | " + " | ".join(systems) + " | target |", "|---" * (len(systems) + 2) + "|"]
    for key in keys:
        cells = []
        for system in systems:
            value = results["systems"][system]["aggregate"].get(key)
            mark = "" if value is None or key not in TARGETS or system == "ground_truth" else \
                (" ✓" if passes(key, value) else " ✗")
            cells.append("–" if value is None else f"{value:.3f}{mark}")
        target = " ".join(str(t) for t in TARGETS[key]) if key in TARGETS else ""
        lines.append(f"| {MODEL_INDEX_METRICS[key][1]} | " + " | ".join(cells) + f" | {target} |")
    text = "\n".join(lines)
    if results.get("protocol"):
        protocol = results["protocol"]
        text += (f"\n\nProtocol {protocol['name']}: the {results['n_sentences']} sentences of `{protocol['list']}` "
                 f"(sha256 {protocol['list_sha256']}), each spoken by a held-out speaker of its accent from "
                 f"`{results['test_data']}`; device {results['device']}.")
    else:
        text += (f"\n\n{results['n_sentences']} test sentences from `{results['test_data']}`, each spoken with "
                 f"another utterance of the same speaker as the voice prompt; device {results['device']}.")
    if results.get("skipped"):
        text += " Not measured: " + "; ".join(f"{k} ({v.split('.')[0]})" for k, v in results["skipped"].items()) + "."
    return text


def eval_results(results: dict[str, Any], dataset_id: str | None, system: str = "finetuned"):
    """`EvalResult`s (the card's model-index) of one system of an evaluation's results.json."""
    from huggingface_hub import EvalResult

    aggregate = results["systems"][system]["aggregate"]
    dataset_type = dataset_id or Path(str(results["test_data"])).name or "custom"
    entries = []
    for key, (metric_type, metric_name) in MODEL_INDEX_METRICS.items():
        if key in aggregate:
            name = f"{metric_name} ({results['device']})" if key == "rtf" else metric_name
            entries.append(EvalResult(task_type="text-to-speech", task_name="Text-to-Speech",
                                      dataset_type=dataset_type, dataset_name=dataset_id or dataset_type,
                                      dataset_split="test", metric_type=metric_type, metric_name=name,
                                      metric_value=round(float(aggregate[key]), 4)))
    return entries


def render_model_card(folder: str | os.PathLike, repo_id: str, results: dict[str, Any] | None = None,
                      base_model_id: str | None = None, dataset_id: str | None = None, license: str = "mit",
                      files: tuple[str, list[tuple[Path, str]]] | None = None):
    """The card of a merged model or of adapters, with metadata the Hub indexes (see `hub_cards/model_card.md`).

    Args:
        folder: The merged model or adapter folder the card describes.
        repo_id: The repo it goes to, named in the card's loading example.
        results: An evaluation's `results.json`: the card's table and `model-index`.
        base_model_id: The card's `base_model` (default: the one the folder records).
        dataset_id: The card's `datasets` entry.
        license: The licence id.
        files: `model_files(folder)`, when already listed.

    Returns:
        A `huggingface_hub.ModelCard` with `language: es`, `pipeline_tag: text-to-speech`, `base_model` and
        `base_model_relation`, the accents as tags, and the evaluation's figures.
    """
    import logging

    from huggingface_hub import ModelCard, ModelCardData

    from ..constants import LAYOUTS
    from ..models.checkpoint import read_config
    from ..models.lora import accent_adapter_dirs, is_adapter_dir, read_adapter_metadata

    folder = Path(folder)
    kind, files = files or model_files(folder)
    merged = read_config(folder) if kind == "merged" else {}
    if kind == "merged":
        metadata = merged.get("adapter_metadata", {})
        accents = [merged["accent"]] if merged.get("accent") else []
    else:
        dirs = {"": folder} if is_adapter_dir(folder) else accent_adapter_dirs(folder)
        per = {name: read_adapter_metadata(path) for name, path in dirs.items()}
        metadata = next(iter(per.values()))
        accents = sorted({m["accent"] for m in per.values() if m.get("accent")})
    base = base_model_id or merged.get("base_model") or metadata.get("base_model")
    if not is_repo_id(base):
        logging.getLogger(__name__).warning("base model %r is not a Hub repo id: the card names no base_model "
                                            "(pass --base_model_id)", base)
        base_id = None
    else:
        base_id = base
    dataset = dataset_id or metadata.get("dataset")
    datasets = [dataset] if is_repo_id(dataset) else None
    parts = merged.get("adapted") if kind == "merged" else \
        sorted({rel.split("/")[-2] for _, rel in files if rel.endswith("adapter_config.json")})
    adapted = [{"t3": "T3 (Llama backbone)", "s3gen": "S3Gen flow"}.get(p, p) for p in parts or []]
    generation = merged.get("generation") or LAYOUTS.get(metadata.get("model_variant"),
                                                         LAYOUTS["multilingual"]).generation
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        language=["es"],
        license=license,
        library_name="chatterbox-latam",
        pipeline_tag="text-to-speech",
        base_model=base_id,
        base_model_relation=("merge" if kind == "merged" else "adapter") if base_id else None,
        datasets=datasets,
        tags=["text-to-speech", "chatterbox", "latin-american-spanish", "voice-cloning",
              *(["lora", "peft"] if kind == "adapter" else ["lora-merged"]), *[f"accent-{a}" for a in accents]],
        model_name=model_name,
        eval_results=eval_results(results, datasets[0] if datasets else None) if results else None,
    )
    check = merged.get("merge_check", {})
    merge_check_text = ""
    if check:
        worst = max(check["max_relative_difference"].values())
        merge_check_text = f"{worst:.1e} relative difference on probe inputs (tolerance {check['tolerance']:.0e})"
    return ModelCard.from_template(
        card_data,
        template_str=card_template("model_card.md"),
        kind=kind,
        model_name=model_name,
        repo_id=repo_id,
        base_model=base,
        accents=accents,
        accent_names=ACCENT_NAMES,
        adapted=adapted,
        torch_dtype=merged.get("torch_dtype", "float32"),
        upstream_layout=any(p == "s3gen.pt" for _, p in files),
        generation=generation,
        alignment_off=alignment_off_reason(generation, list(parts or [])),
        merge_check_text=merge_check_text,
        recipe=metadata.get("recipe"),
        datasets=datasets,
        evaluation=evaluation_table(results) if results else None,
    )


def alignment_off_reason(generation: str, parts: list[str]) -> str:
    """Why this model's synthesis runs without upstream's alignment heuristics where its generation has them (v2):
    the adapter changed the attention they read (`synthesis.loading.adapts_attention`); '' when it runs them."""
    from ..constants import GENERATIONS
    from ..synthesis.loading import adapts_attention

    spec = GENERATIONS.get(generation)
    if spec is None or not spec.alignment or not adapts_attention(parts):
        return ""
    return ("the adapter changed T3's layers, and so the attention maps of layers 9, 12 and 13 the heuristics read, "
            "whose thresholds were set on the base's maps; upstream main decodes every model without them")


def is_repo_id(value: str | None) -> bool:
    import re

    return bool(value) and not os.path.exists(value) and re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None


def model_files(folder: str | os.PathLike) -> tuple[str, list[tuple[Path, str]]]:
    """What a model push uploads: ("merged" | "adapter", [(local file, path in repo)]).

    A merged model folder is uploaded as it is; an adapter folder too; a per-accent training output
    (`<accent>/final/`) goes up as `<accent>/...`. Checkpoints and training state are left out.
    """
    import fnmatch

    from ..constants import CONFIG_NAME, MERGED_LAYOUTS
    from ..models.checkpoint import read_config
    from ..models.lora import accent_adapter_dirs, is_adapter_dir

    folder = Path(folder)

    def walk(root: Path, prefix: str) -> list[tuple[Path, str]]:
        found = []
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(fnmatch.fnmatch(part, pattern) for part in relative.parts
                                          for pattern in IGNORE_PATTERNS):
                found.append((path, prefix + relative.as_posix()))
        return found

    if (folder / CONFIG_NAME).exists() and read_config(folder).get("layout") in MERGED_LAYOUTS.values():
        return "merged", [f for f in walk(folder, "") if f[1] != "README.md"]
    if is_adapter_dir(folder):
        return "adapter", [f for f in walk(folder, "") if f[1] != "README.md"]
    accents = accent_adapter_dirs(folder)
    if accents:
        return "adapter", [f for accent, path in accents.items() for f in walk(path, f"{accent}/")
                           if f[1] != f"{accent}/README.md"]
    raise HubError(f"{folder} is neither a merged model (training/merge.py's output) nor an adapter folder (t3/, "
                   "s3gen/, adapter.json) nor a folder of per-accent adapters: check --path.")


class HubError(RuntimeError):
    """A Hub operation failed; the message says what to do, and local outputs are left where they are."""


# Never uploaded with a model: training state and the Trainer's own outputs.
IGNORE_PATTERNS = ["checkpoint-*", "last-checkpoint", "runs", ".*", "*.bin", "batches-rank*.jsonl", "optimizer.pt",
                   "scheduler.pt", "rng_state*.pth", "trainer_state.json"]
