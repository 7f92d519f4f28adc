"""Checkpoints a run can trust: a completeness marker written last, the checkpoint to resume from, and syncing the
latest one with a Hub repo (for pods that may be lost)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from ..hub.push import hub_call

logger = logging.getLogger(__name__)


COMPLETE_MARKER = "checkpoint_complete.json"


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint every file of which was written (the marker comes last)."""
    return (path / COMPLETE_MARKER).exists() and not (path / "checkpoint-is-incomplete.txt").exists()


def find_resume_checkpoint(output_dir: str | Path, resume: str | None) -> str | None:
    """`resume` as the user gave it: None, a checkpoint folder, or 'latest' (the newest complete checkpoint)."""
    if not resume:
        return None
    if resume != "latest":
        path = Path(resume)
        if not is_complete_checkpoint(path):
            raise ValueError(f"--resume {resume}: not a complete checkpoint (no {COMPLETE_MARKER}); "
                             "pick another checkpoint-N folder or use --resume latest.")
        return str(path)
    candidates = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)),
        key=lambda p: int(p.name.split("-")[1]), reverse=True,
    )
    for path in candidates:
        if is_complete_checkpoint(path):
            return str(path)
        logger.warning("Skipping %s: incomplete (interrupted while saving).", path)
    logger.info("No complete checkpoint in %s: starting from scratch.", output_dir)
    return None


CHECKPOINT_PATH_IN_REPO = "last-checkpoint"


def push_latest_checkpoint(checkpoint_dir: str | os.PathLike, repo_id: str, private: bool = True) -> str | None:
    """Uploads the newest *complete* checkpoint under `checkpoint_dir` to `repo_id/last-checkpoint/` in one commit
    (replacing the previous one); returns its name, or None when there is nothing new to send.

    For pods that can disappear (Runpod, spot): `training/sync_checkpoints.py watch` calls this at intervals.
    """
    from huggingface_hub import HfApi

    checkpoint_dir = Path(checkpoint_dir)
    latest = find_resume_checkpoint(checkpoint_dir, "latest") if checkpoint_dir.exists() else None
    if latest is None:
        return None
    latest = Path(latest)
    record = checkpoint_dir / ".last_synced"
    if record.exists() and record.read_text().strip() == latest.name:
        return None
    api = HfApi()
    hub_call(f"Creating {repo_id}", api.create_repo, repo_id, private=private, exist_ok=True)
    hub_call(f"Uploading {latest.name} to {repo_id}", api.upload_folder, repo_id=repo_id, folder_path=str(latest),
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
