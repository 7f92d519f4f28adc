"""Finding a checkpoint: a local folder or a Hub repo id resolved to local files in one of `constants.LAYOUTS`
(downloading what is missing, the language packs' support files from their base repo)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import layout_name
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


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint could not be found locally nor downloaded; the message says what to do."""


@dataclass
class Checkpoint:
    """A checkpoint resolved to local files."""

    source: str
    directory: Path
    layout: CheckpointLayout
    paths: dict[str, Path]
    config: dict[str, Any] = field(default_factory=dict)

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
                       t3_model: str | None = None) -> Checkpoint:
    """Finds a checkpoint's files: a local folder as it is, a Hub repo id through `snapshot_download`.

    `variant` picks the layout when a repo holds several (`ResembleAI/chatterbox` holds the multilingual v2 and v3
    T3 and the English model; `t3_model="v3"` is upstream's name for the v3 choice); a local folder is recognised
    by its files. A language pack's VE, tokenizer and default voice come from its support repo
    (`ResembleAI/chatterbox`) when the folder or repo does not hold them.
    """
    variant = layout_name(variant, t3_model)
    source = str(name_or_path)
    directory = Path(source).expanduser()
    if directory.is_dir():
        config = read_config(directory)
        layout = LAYOUTS[variant] if variant else _detect_layout(directory, config)
    elif directory.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise CheckpointNotFoundError(
            f"'{source}' is neither a checkpoint folder nor a Hub repo id (OWNER/NAME). "
            "Point base_model to a folder in the ResembleAI/chatterbox file layout or to a repo id."
        )
    else:
        name = variant or REPO_LAYOUTS.get(source.lower()) or _remote_config(source, revision).get("layout")
        layout = LAYOUTS[name or "multilingual"]
        own = [layout.t3, layout.s3gen, CONFIG_NAME]
        if layout.support_repo:
            own.append("t3_*.safetensors")  # a pack's T3 file under another name than expected is still found
        else:
            own += [layout.ve, layout.tokenizer, *([layout.conds] if layout.conds else [])]
        directory = _download(source, own, revision)
        config = read_config(directory)

    paths = {key: directory / name for key, name in layout.files.items()}
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
            support = _download(layout.support_repo, names, None)
        except CheckpointNotFoundError as error:
            raise CheckpointNotFoundError(
                f"{source} is a {layout.name} language pack: its {names} come from {layout.support_repo}, which "
                f"could not be reached ({error}). Put those files beside the pack's own in {directory}, or run "
                f"`hf download {layout.support_repo} {' '.join(names)} --local-dir {directory}`."
            ) from None
        for key, name in zip(wanted, names):
            paths[key] = support / name
        missing = [key for key, path in paths.items() if not path.exists()]
    if "conds" in missing:
        paths.pop("conds")  # optional: the default voice
        missing.remove("conds")
    if missing:
        raise CheckpointNotFoundError(
            f"Checkpoint '{source}' ({layout.name} layout) lacks {[layout.files[k] for k in missing]} in {directory}."
        )
    return Checkpoint(source=source, directory=directory, layout=layout, paths=paths, config=config)



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
