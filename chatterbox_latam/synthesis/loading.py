"""Loading a model for synthesis: a merged model or any Chatterbox checkpoint (`models.loading`), an adapter folder
on the base its adapter.json names (at the revision it was trained on), or per-accent adapters loaded together on
one base; from a folder or a Hub repo id. `load_model` keeps the model `generate_speech` uses.
"""

from __future__ import annotations

import os
from pathlib import Path

def adapts_attention(adapted: list[str]) -> bool:
    """Whether a merged model's adapter changed the attention maps upstream's alignment heuristics read, from the
    parts its config.json says were adapted: T3's LoRA targets apply to every layer of its backbone, so any T3
    adapter did (`decoding.adapted_watched_attention` tells it from the weights of an unmerged one). On a
    multilingual T3 synthesis then runs without the heuristics by default (`decoding.default_alignment`); the model
    card says so."""
    return "t3" in adapted


def load_tts(cls, name_or_path: str | os.PathLike, device: str, base_model: str | None, revision: str | None,
             mode: str, t3_model: str | None):
    """`ChatterboxLatamTTS.from_pretrained` without the S3Gen choice (`cls` is the class): a merged model or any
    Chatterbox checkpoint, an adapter folder on its base, or a folder of per-accent adapters on theirs."""
    from ..models.checkpoint import resolve_checkpoint
    from ..models.loading import load_chatterbox
    from ..models.lora import (
        accent_adapter_dirs,
        adapter_base,
        apply_adapters,
        is_adapter_dir,
        read_adapter_metadata,
    )

    source = str(name_or_path)
    if not Path(source).exists() and source.count("/") == 1 and not source.startswith((".", "/", "~")):
        source = _adapter_snapshot(source, revision) or source
    adapters: dict[str, Path] = {}
    if Path(source).is_dir():
        adapters = {"default": Path(source)} if is_adapter_dir(source) else accent_adapter_dirs(source)
    if not adapters:
        checkpoint = resolve_checkpoint(source, revision=revision, t3_model=t3_model)
        config = checkpoint.config
        trained = config.get("adapter_metadata") or {}
        attention = adapts_attention(config.get("adapted", []))
        model = cls(load_chatterbox(checkpoint, device), config.get("language") or "es", config.get("accent"),
                    mode=mode, generation=checkpoint.generation.name,
                    normalize_text=trained.get("normalize_text", True),
                    reference_cleaning=trained.get("reference_cleaning"),
                    adapted_attention=attention if config.get("adapted") else None,
                    prompt_seconds=trained.get("max_prompt_seconds"))
        model.s3gen_was_adapted = "s3gen" in config.get("adapted", [])
        return model.found_in(checkpoint.directory)
    metadata = {name: read_adapter_metadata(path) for name, path in adapters.items()}
    # Each adapter's base at the revision it was trained on (adapter.json); a base_model given is taken as given.
    bases = {adapter_base(m, base_model) for m in metadata.values()}
    if any(not base for base, *_ in bases):
        raise ValueError(f"{source} holds adapters without adapter.json: pass the base model they were trained on "
                         "(base_model=... / --base_model).")
    if len(bases) > 1:
        raise ValueError(f"The adapters in {source} were trained on different bases {sorted(bases, key=str)}: "
                         "load them one at a time.")
    base, variant, base_revision, support_revision = bases.pop()
    checkpoint = resolve_checkpoint(base, variant=variant, revision=base_revision, t3_model=t3_model,
                                    support_revision=support_revision)
    for name, path in adapters.items():
        checkpoint.check_tokenizer(metadata[name].get("tokenizer"), f"The adapter {path}")
    tts = load_chatterbox(checkpoint, device)
    for name, path in adapters.items():
        apply_adapters(tts, path, adapter_name=name)
    first = next(iter(metadata.values()))
    accent = first.get("accent") if len(adapters) == 1 else None
    return cls(tts, first.get("language") or "es", accent, adapters=list(adapters), mode=mode,
               generation=checkpoint.generation.name, normalize_text=first.get("normalize_text", True),
               reference_cleaning=first.get("reference_cleaning"),
               prompt_seconds=first.get("max_prompt_seconds")).found_in(checkpoint.directory)


def _adapter_snapshot(repo_id: str, revision: str | None) -> str | None:
    """Downloads a Hub repo's adapter files when it is an adapter repo; None for a model repo (or an unreachable
    one: the model loader then says what is missing)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from ..models.lora import ADAPTER_METADATA, accent_adapter_dirs, is_adapter_dir

    try:
        local = snapshot_download(repo_id, revision=revision,
                                  allow_patterns=[ADAPTER_METADATA, "t3/*", "s3gen/*", "*/" + ADAPTER_METADATA,
                                                  "*/t3/*", "*/s3gen/*"],
                                  ignore_patterns=["checkpoint-*", "last-checkpoint/*"])
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError):
        return None
    return local if is_adapter_dir(local) or accent_adapter_dirs(local) else None
