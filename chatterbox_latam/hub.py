"""Pushing to the Hugging Face Hub: repos, cards rendered from `hub_cards/`, and clear errors offline.

Cards are `huggingface_hub` `DatasetCard` / `ModelCard` objects rendered from the Jinja templates in `hub_cards/`
with typed metadata (`DatasetCardData`, `ModelCardData` with a `model-index` built from the evaluation's
results.json), validated by the Hub before anything is uploaded. A model push is one commit: the weights, the card
and the evaluation report together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .prepare import SETTINGS_NAME, SUMMARY_NAME, load_prepared, summary_table

CARDS_DIR = Path(__file__).resolve().parent.parent / "hub_cards"

# Licences of the sources the project reads (OpenSLR's Latin-American sets are CC BY-SA 4.0; Common Voice CC0).
SOURCE_LICENSES = {"openslr": "cc-by-sa-4.0", "commonvoice": "cc0-1.0"}


class HubError(RuntimeError):
    """A Hub operation failed; the message says what to do, and local outputs are left where they are."""


def _size_category(n: int) -> str:
    for limit, name in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if n < limit:
            return name
    return "n>1M"


def render_dataset_card(summary: dict[str, Any], repo_id: str, settings: dict[str, Any] | None = None,
                        source_format: str | None = None, license: str | None = None):
    """The prepared dataset's card: metadata (language es, accents, licence, size, task) and a readable summary."""
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
        template_path=str(CARDS_DIR / "dataset_card.md"),
        pretty_name=card_data.pretty_name,
        repo_id=repo_id,
        summary_table=summary_table(summary),
        sources=sources,
        input=summary["input"],
        base_model=summary["base_model"],
        rejected=summary["rejected"],
        rejected_by_reason=summary["rejected_by_reason"],
        s3gen_features=summary["s3gen_features"],
        sampling_rate=settings.get("sampling_rate", 24000),
        target_loudness=f"{settings['target_loudness']} LUFS" if settings.get("target_loudness") is not None else "source level",
        min_audio_length=settings.get("min_audio_length", "?"),
        max_audio_length=settings.get("max_audio_length", "?"),
    )


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of the HTTP client huggingface_hub uses (httpx2 in recent releases, httpx before)."""
    import importlib

    errors: list[type[BaseException]] = [OSError, ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _hub_call(what: str, function, *args, **kwargs):
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        return function(*args, **kwargs)
    except OfflineModeIsEnabled as error:
        raise HubError(f"{what}: HF_HUB_OFFLINE is set. Unset it to push; the local files are untouched.") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        hint = {401: "log in with `hf auth login` or set HF_TOKEN (a token with write access)",
                403: "the token has no write access to that namespace"}.get(status, "check the repo id and your access")
        raise HubError(f"{what} failed ({status}): {hint}. The local files are untouched.") from error
    except _transport_errors() as error:
        raise HubError(f"{what}: cannot reach the Hub ({error}). Check the network; the local files are untouched.") from error


def push_prepared_dataset(prepared_dir: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Pushes the prepared DatasetDict (parquet shards) and its card; returns the dataset's URL.

    The card is written to `<prepared_dir>/README.md` as well. `datasets` writes its own README with the
    `configs` / `dataset_info` metadata the loader needs; the project's card keeps that metadata and adds its own.
    """
    from huggingface_hub import DatasetCard, HfApi

    prepared_dir = Path(prepared_dir)
    summary = json.loads((prepared_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    settings = json.loads((prepared_dir / SETTINGS_NAME).read_text(encoding="utf-8"))
    dataset = load_prepared(prepared_dir)
    api = HfApi()
    _hub_call(f"Creating dataset repo {repo_id}", api.create_repo, repo_id, repo_type="dataset", private=private,
              exist_ok=True)
    _hub_call(f"Pushing the dataset to {repo_id}", dataset.push_to_hub, repo_id, private=private)
    card = render_dataset_card(summary, repo_id, settings, settings.get("format"), settings.get("dataset_license"))
    pushed = _hub_call("Reading the pushed card", DatasetCard.load, repo_id, repo_type="dataset")
    for key in ("configs", "dataset_info"):
        if key in pushed.data.to_dict():
            setattr(card.data, key, pushed.data.to_dict()[key])
    card.save(prepared_dir / "README.md")
    _hub_call("Pushing the dataset card", card.push_to_hub, repo_id, repo_type="dataset",
              commit_message="Dataset card from chatterbox-es-latam")
    return f"{api.endpoint}/datasets/{repo_id}"


# -- models and adapters -----------------------------------------------------------------------------------------
ACCENT_NAMES = {"mx": "Mexican", "ar": "Argentine (Rioplatense)", "co": "Colombian", "cl": "Chilean", "pe": "Peruvian",
                "pr": "Puerto Rican", "ve": "Venezuelan"}
# results.json key -> (model-index metric type, readable name)
MODEL_INDEX_METRICS = {
    "wer_spanish": ("wer", "WER (Spanish normalisation)"),
    "cer_spanish": ("cer", "CER (Spanish normalisation)"),
    "wer_whisper": ("wer", "WER (Whisper basic normalisation)"),
    "cer_whisper": ("cer", "CER (Whisper basic normalisation)"),
    "speaker_sim": ("speaker_similarity", "Speaker similarity (Resemblyzer)"),
    "speaker_sim_wavlm": ("speaker_similarity", "Speaker similarity (WavLM)"),
    "mos": ("dnsmos", "DNSMOS (overall)"),
    "utmos": ("utmos", "UTMOS"),
    "rtf": ("rtf", "Real-time factor"),
}
# Never uploaded with a model: training state and the Trainer's own outputs.
IGNORE_PATTERNS = ["checkpoint-*", "last-checkpoint", "runs", ".*", "*.bin", "batches-rank*.jsonl", "optimizer.pt",
                   "scheduler.pt", "rng_state*.pth", "trainer_state.json"]


def _is_repo_id(value: str | None) -> bool:
    import re

    return bool(value) and not os.path.exists(value) and re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None


def model_files(folder: str | os.PathLike) -> tuple[str, list[tuple[Path, str]]]:
    """What a model push uploads: ("merged" | "adapter", [(local file, path in repo)]).

    A merged model folder is uploaded as it is; an adapter folder too; a per-accent training output
    (`<accent>/final/`) goes up as `<accent>/...`. Checkpoints and training state are left out.
    """
    import fnmatch

    from .lora import accent_adapter_dirs, is_adapter_dir
    from .modeling import CONFIG_NAME, MERGED_LAYOUTS, _read_config

    folder = Path(folder)

    def walk(root: Path, prefix: str) -> list[tuple[Path, str]]:
        found = []
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_file() and not any(fnmatch.fnmatch(part, pattern) for part in relative.parts
                                          for pattern in IGNORE_PATTERNS):
                found.append((path, prefix + relative.as_posix()))
        return found

    if (folder / CONFIG_NAME).exists() and _read_config(folder).get("layout") in MERGED_LAYOUTS.values():
        return "merged", [f for f in walk(folder, "") if f[1] != "README.md"]
    if is_adapter_dir(folder):
        return "adapter", [f for f in walk(folder, "") if f[1] != "README.md"]
    accents = accent_adapter_dirs(folder)
    if accents:
        return "adapter", [f for accent, path in accents.items() for f in walk(path, f"{accent}/")
                           if f[1] != f"{accent}/README.md"]
    raise HubError(f"{folder} is neither a merged model (training/merge.py's output) nor an adapter folder (t3/, "
                   "s3gen/, adapter.json) nor a folder of per-accent adapters: check --path.")


def evaluation_table(results: dict[str, Any]) -> str:
    """The evaluation's aggregate numbers as a markdown table, one column per system, with the seed's targets."""
    from .evaluation import TARGETS, passes

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
    text += (f"\n\n{results['n_sentences']} test sentences from `{results['test_data']}`, each spoken with another "
             f"utterance of the same speaker as the voice prompt; device {results['device']}.")
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
    """The card of a merged model or of adapters, with metadata the Hub indexes (see `hub_cards/model_card.md`)."""
    import logging

    from huggingface_hub import ModelCard, ModelCardData

    from .lora import accent_adapter_dirs, is_adapter_dir, read_adapter_metadata
    from .modeling import LAYOUTS, _read_config

    folder = Path(folder)
    kind, files = files or model_files(folder)
    merged = _read_config(folder) if kind == "merged" else {}
    if kind == "merged":
        metadata = merged.get("adapter_metadata", {})
        accents = [merged["accent"]] if merged.get("accent") else []
    else:
        dirs = {"": folder} if is_adapter_dir(folder) else accent_adapter_dirs(folder)
        per = {name: read_adapter_metadata(path) for name, path in dirs.items()}
        metadata = next(iter(per.values()))
        accents = sorted({m["accent"] for m in per.values() if m.get("accent")})
    base = base_model_id or merged.get("base_model") or metadata.get("base_model")
    if not _is_repo_id(base):
        logging.getLogger(__name__).warning("base model %r is not a Hub repo id: the card names no base_model "
                                            "(pass --base_model_id)", base)
        base_id = None
    else:
        base_id = base
    dataset = dataset_id or metadata.get("dataset")
    datasets = [dataset] if _is_repo_id(dataset) else None
    parts = merged.get("adapted") if kind == "merged" else \
        sorted({rel.split("/")[-2] for _, rel in files if rel.endswith("adapter_config.json")})
    adapted = [{"t3": "T3 (Llama backbone)", "s3gen": "S3Gen flow"}.get(p, p) for p in parts or []]
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
        template_path=str(CARDS_DIR / "model_card.md"),
        kind=kind,
        model_name=model_name,
        repo_id=repo_id,
        base_model=base,
        accents=accents,
        accent_names=ACCENT_NAMES,
        adapted=adapted,
        torch_dtype=merged.get("torch_dtype", "float32"),
        upstream_layout=any(p == "s3gen.pt" for _, p in files),
        generation=merged.get("generation") or LAYOUTS.get(metadata.get("model_variant"),
                                                           LAYOUTS["multilingual"]).generation,
        merge_check_text=merge_check_text,
        recipe=metadata.get("recipe"),
        datasets=datasets,
        evaluation=evaluation_table(results) if results else None,
    )


def push_model(folder: str | os.PathLike, repo_id: str, private: bool = False, results_path: str | None = None,
               base_model_id: str | None = None, dataset_id: str | None = None, license: str = "mit",
               expected_kind: str | None = None) -> str:
    """Pushes a merged model or adapters with their card (and the evaluation's results.json / report.md under
    `evaluation/`) in one commit; returns the repo URL. The card is also written to `<folder>/README.md`.
    `expected_kind` ("merged" / "adapter"): refuse a folder that holds the other kind."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    kind, files = model_files(folder)
    if expected_kind and kind != expected_kind:
        held = "a merged model" if kind == "merged" else "adapters"
        raise HubError(f"--what {expected_kind}, but {folder} holds {held}: pass --what {kind}.")
    results = None
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(path)) for path, rel in files]
    if results_path:
        results_path = Path(results_path)
        results = json.loads(results_path.read_text(encoding="utf-8"))
        for extra in (results_path, results_path.with_name("report.md")):
            if extra.exists():
                operations.append(CommitOperationAdd(path_in_repo=f"evaluation/{extra.name}",
                                                     path_or_fileobj=str(extra)))
    card = render_model_card(folder, repo_id, results, base_model_id, dataset_id, license, files=(kind, files))
    card.save(folder / "README.md")
    _hub_call("Checking the card's metadata", card.validate, repo_type="model")
    operations.append(CommitOperationAdd(path_in_repo="README.md",
                                         path_or_fileobj=str(card).encode("utf-8")))
    api = HfApi()
    _hub_call(f"Creating {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True)
    _hub_call(f"Uploading {folder} to {repo_id}", api.create_commit, repo_id=repo_id, operations=operations,
              commit_message=f"Upload {folder.name} with chatterbox-es-latam")
    return f"{api.endpoint}/{repo_id}"


CHECKPOINT_PATH_IN_REPO = "last-checkpoint"


def push_latest_checkpoint(checkpoint_dir: str | os.PathLike, repo_id: str, private: bool = True) -> str | None:
    """Uploads the newest *complete* checkpoint under `checkpoint_dir` to `repo_id/last-checkpoint/` in one commit
    (replacing the previous one); returns its name, or None when there is nothing new to send.

    For pods that can disappear (Runpod, spot): `training/sync_checkpoints.py watch` calls this at intervals.
    """
    from huggingface_hub import HfApi

    from .trainer import find_resume_checkpoint

    checkpoint_dir = Path(checkpoint_dir)
    latest = find_resume_checkpoint(checkpoint_dir, "latest") if checkpoint_dir.exists() else None
    if latest is None:
        return None
    latest = Path(latest)
    record = checkpoint_dir / ".last_synced"
    if record.exists() and record.read_text().strip() == latest.name:
        return None
    api = HfApi()
    _hub_call(f"Creating {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True)
    _hub_call(f"Uploading {latest.name} to {repo_id}", api.upload_folder, repo_id=repo_id, folder_path=str(latest),
              path_in_repo=CHECKPOINT_PATH_IN_REPO, delete_patterns=["*"],
              commit_message=f"Sync {latest.name}")
    record.write_text(latest.name)
    return latest.name


def pull_latest_checkpoint(repo_id: str, checkpoint_dir: str | os.PathLike) -> Path | None:
    """When `checkpoint_dir` holds no complete checkpoint, downloads `repo_id/last-checkpoint/` into
    `checkpoint_dir/checkpoint-N` so `--resume latest` finds it; returns that folder (None if nothing to pull)."""
    import shutil
    import tempfile

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    from .trainer import COMPLETE_MARKER, find_resume_checkpoint

    checkpoint_dir = Path(checkpoint_dir)
    if checkpoint_dir.exists() and find_resume_checkpoint(checkpoint_dir, "latest"):
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            snapshot_download(repo_id=repo_id, allow_patterns=[f"{CHECKPOINT_PATH_IN_REPO}/*"], local_dir=tmp)
            source = Path(tmp) / CHECKPOINT_PATH_IN_REPO
            marker = source / COMPLETE_MARKER
            if not marker.exists():
                return None
            step = json.loads(marker.read_text())["global_step"]
            target = checkpoint_dir / f"checkpoint-{step}"
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target)
            (checkpoint_dir / ".last_synced").write_text(target.name)
            return target
    except (RepositoryNotFoundError, EntryNotFoundError):
        return None
