"""Pushing prepared datasets and models to the Hub: one commit each, with clear errors when the Hub cannot be
reached or refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data.dataset import SETTINGS_NAME, SUMMARY_NAME, load_prepared
from .cards import HubError, model_files, render_dataset_card, render_model_card


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of the HTTP client huggingface_hub uses (httpx2 in recent releases, httpx before)."""
    import importlib

    errors: list[type[BaseException]] = [OSError, ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def hub_call(what: str, function, *args, **kwargs):
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
    except transport_errors() as error:
        raise HubError(f"{what}: cannot reach the Hub ({error}). Check the network; the local files are untouched.") from error


def push_prepared_dataset(prepared_dir: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Pushes the prepared DatasetDict (parquet shards) and its card; returns the dataset's URL.

    The card is written to `<prepared_dir>/README.md` as well. `datasets` writes its own README with the
    `configs` / `dataset_info` metadata the loader needs; the project's card keeps that metadata and adds its own.

    Args:
        prepared_dir: The preparation's output folder (its `dataset/`, `summary.json` and `settings.json`).
        repo_id: The Hub dataset repo (`USER/NAME`), created when missing.
        private: Create the repo as private.

    Returns:
        The dataset's URL on the Hub.

    Raises:
        HubError: No token, no network or a refusal from the Hub; the message says what to do, and nothing local
            is changed.
    """
    from huggingface_hub import DatasetCard, HfApi

    prepared_dir = Path(prepared_dir)
    summary = json.loads((prepared_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    settings = json.loads((prepared_dir / SETTINGS_NAME).read_text(encoding="utf-8"))
    dataset = load_prepared(prepared_dir)
    api = HfApi()
    hub_call(f"Creating dataset repo {repo_id}", api.create_repo, repo_id, repo_type="dataset", private=private,
              exist_ok=True)
    hub_call(f"Pushing the dataset to {repo_id}", dataset.push_to_hub, repo_id, private=private)
    card = render_dataset_card(summary, repo_id, settings, settings.get("format"), settings.get("dataset_license"))
    pushed = hub_call("Reading the pushed card", DatasetCard.load, repo_id, repo_type="dataset")
    for key in ("configs", "dataset_info"):
        if key in pushed.data.to_dict():
            setattr(card.data, key, pushed.data.to_dict()[key])
    card.save(prepared_dir / "README.md")
    hub_call("Pushing the dataset card", card.push_to_hub, repo_id, repo_type="dataset",
              commit_message="Dataset card from chatterbox-es-latam")
    return f"{api.endpoint}/datasets/{repo_id}"


def push_model(folder: str | os.PathLike, repo_id: str, private: bool = False, results_path: str | None = None,
               base_model_id: str | None = None, dataset_id: str | None = None, license: str = "mit",
               expected_kind: str | None = None) -> str:
    """Pushes a merged model or adapters with their card (and the evaluation's results.json / report.md under
    `evaluation/`) in one commit. The card is also written to `<folder>/README.md`.

    Args:
        folder: A merged model folder, an adapter folder, or a folder of per-accent adapters (`mx/`, `ar/`, ...);
            checkpoints and training state are left out.
        repo_id: The Hub model repo (`USER/NAME`), created when missing.
        private: Create the repo as private.
        results_path: An evaluation's `results.json`: its figures go into the card's table and `model-index`, and
            it and `report.md` beside it are uploaded under `evaluation/`.
        base_model_id: The card's `base_model` (default: the one the folder records).
        dataset_id: The card's `datasets` entry.
        license: The card's licence.
        expected_kind: `merged` or `adapter`: refuse a folder that holds the other kind.

    Returns:
        The repo's URL on the Hub.

    Raises:
        HubError: The folder is of the other kind, or the Hub cannot be reached or refuses; the message says what
            to do, and nothing local is changed.
    """
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
    hub_call("Checking the card's metadata", card.validate, repo_type="model")
    operations.append(CommitOperationAdd(path_in_repo="README.md",
                                         path_or_fileobj=str(card).encode("utf-8")))
    api = HfApi()
    hub_call(f"Creating {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True)
    hub_call(f"Uploading {folder} to {repo_id}", api.create_commit, repo_id=repo_id, operations=operations,
              commit_message=f"Upload {folder.name} with chatterbox-es-latam")
    return f"{api.endpoint}/{repo_id}"

