"""Finding a checkpoint: a local folder or a Hub repo id resolved to local files in one of `constants.LAYOUTS`
(downloading what is missing, the language packs' support files from their base repo).

A language pack's own VE, tokenizer and default voice are used wherever the pack has them, by repo id and from a
folder alike; only the files it lacks come from its support repo. A checkpoint records where each file came from
and the commit a Hub repo was resolved at, so adapters and merged models can name (and pin) what they were built on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import layout_name
from ..constants import (
    CONFIG_NAME,
    GENERATIONS,
    LAYOUTS,
    MEANFLOW_FILE,
    MEANFLOW_REPO,
    MODEL_TYPE,
    REPO_LAYOUTS,
    CheckpointLayout,
    Generation,
)

logger = logging.getLogger(__name__)

_COMMIT = re.compile(r"[0-9a-f]{40}")
_WARNED_NO_VOICE: set[str] = set()
"""Checkpoints already reported as loading without a default voice (the warning is logged once per folder)."""


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint could not be found locally nor downloaded; the message says what to do."""


@dataclass
class Checkpoint:
    """A checkpoint resolved to local files (`resolve_checkpoint` makes them).

    Attributes:
        source: The repo id or folder asked for.
        directory: The local folder holding the files (a Hub snapshot, or the folder itself).
        layout: Which published file layout the files follow (`constants.LAYOUTS`).
        paths: Each part's file (`t3`, `s3gen`, `ve`, `tokenizer`, `conds` when there is a default voice).
        config: The `config.json` beside the weights (reduced sizes, a merged model's record); empty without one.
    """

    source: str
    directory: Path
    layout: CheckpointLayout
    paths: dict[str, Path]
    config: dict[str, Any] = field(default_factory=dict)
    revision: str | None = None
    """The commit a Hub repo was resolved at (a branch or tag becomes its commit; the revision asked for where the
    cache does not tell the commit); None for a local folder."""
    origins: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Where each file of `paths` came from: (repo id or absolute folder, commit or None for a folder)."""

    @property
    def support_revision(self) -> str | None:
        """The commit of the support repo a language pack took files from (None when it took none, or for a
        folder): recorded beside `revision`, so a reload pins those files too."""
        support = self.layout.support_repo
        return next((commit for repo, commit in self.origins.values() if support and repo == support), None)

    def origin(self, key: str) -> tuple[str, str | None]:
        """(repo id or folder, commit or None for a folder) that the file `key` of `paths` came from."""
        return self.origins.get(key, (self.source, self.revision))

    def tokenizer_record(self) -> dict[str, str | None]:
        """The text tokenizer this checkpoint tokenises with, as adapter.json and a merged model's config.json
        record it: `{"file", "source" (the repo id or folder it came from), "revision" (its commit, None for a
        folder), "sha256"}`."""
        path = self.paths["tokenizer"]
        source, revision = self.origin("tokenizer")
        return {"file": path.name, "source": source, "revision": revision,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    def check_tokenizer(self, recorded: dict[str, Any] | None, what: str) -> bool:
        """Compares a `tokenizer_record` (an adapter's or a merged model's) with this checkpoint's tokenizer. When
        the SHA-256 differ it logs a warning naming both files and returns False; True when they agree or nothing
        was recorded (adapters saved before the record existed)."""
        if not recorded or not recorded.get("sha256"):
            return True
        own = self.tokenizer_record()
        if own["sha256"] == recorded["sha256"]:
            return True

        def name(record):
            at = f"@{record['revision'][:12]}" if record.get("revision") else ""
            return f"{record.get('file')} of {record.get('source')}{at} (SHA-256 {str(record['sha256'])[:16]}...)"

        logger.warning(
            "%s was made with the text tokenizer %s, but %s tokenises with %s: the same text becomes other token "
            "ids, so it will not speak as trained. Load it onto the base it was trained on (with that tokenizer).",
            what, name(recorded), self.source, name(own))
        return False

    @property
    def generation(self) -> Generation:
        """How upstream decodes this checkpoint's T3 (a merged model's config.json records its base's)."""
        return GENERATIONS[self.config.get("generation") or self.layout.generation]

    def fingerprint(self) -> str:
        """Identifies the weights that feature extraction depends on (used to key feature caches)."""
        import hashlib

        digest = hashlib.sha256()
        for key in ("ve", "s3gen"):
            path = self.paths[key]
            stat = path.stat()
            digest.update(f"{key}:{path.name}:{stat.st_size}:".encode())
            with open(path, "rb") as handle:  # size plus head and tail: cheap, and changes with the weights
                digest.update(handle.read(1 << 20))
                handle.seek(max(0, stat.st_size - (1 << 20)))
                digest.update(handle.read())
        digest.update(json.dumps(self.config, sort_keys=True).encode())
        return digest.hexdigest()[:16]


def _detect_layout(directory: Path, config: dict[str, Any]) -> CheckpointLayout:
    if config.get("layout") in LAYOUTS:
        return LAYOUTS[config["layout"]]
    for layout in LAYOUTS.values():  # v2 before v3 where a folder holds both, as upstream's default
        if not layout.name.startswith("merged") and (directory / layout.t3).exists():
            return layout
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    expected = ", ".join(f"{layout.t3} ({layout.name})" for layout in LAYOUTS.values())
    raise CheckpointNotFoundError(
        f"{directory} holds no Chatterbox T3 weights (expected one of: {expected}); found: {present or 'nothing'}."
    )


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not path.exists():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    return config if config.get("model_type") == MODEL_TYPE else {}


def _download(repo_id: str, filenames: list[str], revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
    )

    try:
        return Path(
            snapshot_download(
                repo_id=repo_id,
                revision=revision,
                allow_patterns=filenames,
                token=os.getenv("HF_TOKEN"),
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as error:
        raise CheckpointNotFoundError(
            f"Could not get {filenames} of the Hub repo '{repo_id}' ({type(error).__name__}: {error}). "
            "Check the network and HF_TOKEN, or download it once with "
            f"`hf download {repo_id} --local-dir DIR` and pass DIR instead of the repo id."
        ) from error


def _remote_config(repo_id: str, revision: str | None) -> dict[str, Any]:
    """The project's config.json of a Hub repo ({} when the repo has none, e.g. ResembleAI's own repos)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(repo_id, CONFIG_NAME, revision=revision, token=os.getenv("HF_TOKEN"))
    except EntryNotFoundError:
        return {}
    except Exception:  # noqa: BLE001 - unreachable repo: the download of the weights below says what to do
        return {}
    return read_config(Path(path).parent)


def resolve_checkpoint(name_or_path: str | os.PathLike, variant: str | None = None, revision: str | None = None,
                       t3_model: str | None = None, support_revision: str | None = None) -> Checkpoint:
    """Finds a checkpoint's files: a local folder as it is, a Hub repo id through `snapshot_download`.

    `variant` picks the layout when a repo holds several (`ResembleAI/chatterbox` holds the multilingual v2 and v3
    T3 and the English model; `t3_model="v3"` is upstream's name for the v3 choice); a local folder is recognised
    by its files. A language pack's VE, tokenizer and default voice are the pack's own where it has them (by repo
    id and from a folder alike), else its support repo's (`ResembleAI/chatterbox`). A pack without a default voice
    whose support repo cannot be reached loads without one (references must then be given).

    `revision` (a branch, tag or commit of a Hub repo) is recorded as the commit it resolved to
    (`Checkpoint.revision`); a local folder has none. `support_revision`: the same for a pack's support repo
    (`Checkpoint.support_revision`; default its newest).

    Args:
        name_or_path: A Hub repo id (`ResembleAI/chatterbox`, a language pack, a merged model) or a local folder.
        variant: The layout to take from a repo that holds several (`constants.LAYOUTS`); default: recognised.
        revision: A branch, tag or commit of a Hub repo.
        t3_model: `v2` or `v3`: which T3 of `ResembleAI/chatterbox`.
        support_revision: The commit of a language pack's support repo to take its missing files from.

    Returns:
        The files, their layout and where each came from.

    Raises:
        CheckpointNotFoundError: The folder does not exist or lacks a file its layout needs, or the repo cannot
            be downloaded (offline: the message says how to point to a local copy).
    """
    variant = layout_name(variant, t3_model)
    source = str(name_or_path)
    directory = Path(source).expanduser()
    if directory.is_dir():
        config = read_config(directory)
        layout = LAYOUTS[variant] if variant else _detect_layout(directory, config)
        origin, revision = str(directory.resolve()), None
    elif directory.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise CheckpointNotFoundError(
            f"'{source}' is neither a checkpoint folder nor a Hub repo id (OWNER/NAME). "
            "Point base_model to a folder in the ResembleAI/chatterbox file layout or to a repo id."
        )
    else:
        name = variant or REPO_LAYOUTS.get(source.lower()) or _remote_config(source, revision).get("layout")
        layout = LAYOUTS[name or "multilingual"]
        # A pack's own VE, tokenizer and default voice too: absent ones are simply not downloaded (and then come
        # from its support repo below), so a pack tokenises the same by repo id as from a downloaded folder.
        own = [layout.t3, layout.s3gen, CONFIG_NAME, layout.ve, layout.tokenizer,
               *([layout.conds] if layout.conds else [])]
        if layout.support_repo:
            own.append("t3_*.safetensors")  # a pack's T3 file under another name than expected is still found
        directory = _download(source, own, revision)
        config = read_config(directory)
        origin, revision = source, _commit(directory, revision)

    paths = {key: directory / name for key, name in layout.files.items()}
    origins: dict[str, tuple[str, str | None]] = {}
    if not paths["t3"].exists() and layout.support_repo:
        found = sorted(p for p in directory.glob("t3_*.safetensors") if not p.name.startswith("t3_mtl23ls"))
        if len(found) == 1:
            paths["t3"] = found[0]
    if layout.conds:
        paths["conds"] = directory / layout.conds
    missing = [key for key, path in paths.items() if not path.exists()]
    if layout.support_repo and set(missing) - {"t3", "s3gen"}:
        wanted = [k for k in missing if k not in ("t3", "s3gen")]
        names = [layout.files[k] if k != "conds" else layout.conds for k in wanted]
        try:
            support = _download(layout.support_repo, names, support_revision)
        except CheckpointNotFoundError as error:
            if wanted != ["conds"]:
                required = [name for key, name in zip(wanted, names) if key != "conds"]
                raise CheckpointNotFoundError(
                    f"{source} is a {layout.name} language pack: its {required} come from {layout.support_repo}, "
                    f"which could not be reached ({error}). Put those files beside the pack's own in {directory}, "
                    f"or run `hf download {layout.support_repo} {' '.join(names)} --local-dir {directory}`."
                ) from None
            # Only the default voice is missing, and it is optional: load without one (references are given).
            if str(directory) not in _WARNED_NO_VOICE:
                _WARNED_NO_VOICE.add(str(directory))
                logger.warning(
                    "%s (%s language pack) has no default voice (%s) and %s, where it would come from, could not be "
                    "reached: it loads without one, so every generation needs a reference (audio_prompt_path). To "
                    "have one, run `hf download %s %s --local-dir %s`.", source, layout.name, layout.conds,
                    layout.support_repo, layout.support_repo, layout.conds, directory)
            support = None
        if support is not None:
            support_commit = _commit(support, support_revision)
            for key, name in zip(wanted, names):
                paths[key] = support / name
                origins[key] = (layout.support_repo, support_commit)
        missing = [key for key, path in paths.items() if not path.exists()]
    if "conds" in missing:
        paths.pop("conds")  # optional: the default voice
        missing.remove("conds")
    if missing:
        raise CheckpointNotFoundError(
            f"Checkpoint '{source}' ({layout.name} layout) lacks {[layout.files[k] for k in missing]} in {directory}."
        )
    origins = {key: origins.get(key, (origin, revision)) for key in paths}
    return Checkpoint(source=source, directory=directory, layout=layout, paths=paths, config=config,
                      revision=revision, origins=origins)


def _commit(snapshot: Path, revision: str | None) -> str | None:
    """The commit a Hub snapshot folder (the cache's `snapshots/<commit>`) holds; `revision` where the folder does
    not say."""
    return snapshot.name if _COMMIT.fullmatch(snapshot.name) else revision


def resolve_meanflow(source: str | os.PathLike | None = None,
                     revision: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The meanflow S3Gen's weights (`MEANFLOW_FILE`) and the config.json beside them ({} for Resemble's repo): from a
    folder that holds the file, or downloaded from a Hub repo id (default `MEANFLOW_REPO`, Chatterbox-Turbo)."""
    source = str(source or MEANFLOW_REPO)
    directory = Path(source).expanduser()
    if directory.is_dir():
        if not (directory / MEANFLOW_FILE).exists():
            raise CheckpointNotFoundError(
                f"{directory} holds no {MEANFLOW_FILE}: point the meanflow decoder to a folder that does, or to a Hub "
                f"repo id ({MEANFLOW_REPO} ships it).")
        return directory / MEANFLOW_FILE, read_config(directory)
    if directory.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise CheckpointNotFoundError(f"'{source}' is neither a folder holding {MEANFLOW_FILE} nor a Hub repo id.")
    directory = _download(source, [MEANFLOW_FILE, CONFIG_NAME], revision)
    if not (directory / MEANFLOW_FILE).exists():
        raise CheckpointNotFoundError(f"The Hub repo '{source}' holds no {MEANFLOW_FILE} ({MEANFLOW_REPO} does).")
    return directory / MEANFLOW_FILE, read_config(directory)
