"""Pushing to the Hugging Face Hub: repos, cards rendered from `hub_cards/`, and clear errors offline.

Cards are `huggingface_hub` `DatasetCard` / `ModelCard` objects rendered from the Jinja templates in `hub_cards/`
with typed metadata (`DatasetCardData`), so the Hub validates and indexes them.
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
    except (OSError, ConnectionError) as error:
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
