"""Merging LoRA adapters into the base weights: one standalone model per adapter, checked against the adapter.

The merge runs in fp32 on the CPU (PEFT's `merge_and_unload`, which also folds `modules_to_save` in), and only
then casts to the requested dtype: merging fp32 LoRA deltas into bf16 weights would round them away. The output
is a checkpoint folder in the `merged` layout of `constants.LAYOUTS` (all safetensors):

    t3_mtl23ls_v2.safetensors (v3 bases: t3_mtl23ls_v3)  s3gen.safetensors  ve.safetensors  grapheme_mtl_...json
    conds.safetensors (the default voice)  README.md (the card)
    config.json (sizes, base and its revision, the tokenizer's origin and SHA-256, accent, merge check)
    s3gen_meanflow.safetensors (only when the base folder holds one, as the tiny test checkpoint does: unchanged)
    t3-q4_0.gguf (training/merge.py --gguf: T3's backbone for llama.cpp, written through `extra_files` by
                  `synthesis.cpu_fast.gguf.merged_gguf`)

A full-size merge also gets upstream's own file names for the files upstream reads as torch pickles (`ve.pt`,
`s3gen.pt`, `conds.pt`, plain tensor state dicts that load with `weights_only=True`), so
`ChatterboxMultilingualTTS.from_local(folder)` loads it too. Reduced (tiny) models cannot be loaded by upstream,
which hard-codes the full size, so they get no such copies.

The merge is checked twice on fixed probe inputs (T3 logits, S3Gen mel): the fp32 merged model against the adapter
model, and, before the folder is put in place, the saved model loaded back by the loader every model goes through
(`ChatterboxLatamTTS.from_pretrained` loads a merged folder with it)
(which also measures what a cast to bf16/fp16 changes). The differences go into config.json; a merge beyond
`MERGE_TOLERANCE` fails without leaving an output behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import MERGE_DTYPES
from ..constants import CONFIG_NAME, LAYOUTS, MEANFLOW_FILE, MERGED_LAYOUTS, MODEL_TYPE
from ..utils import staged_directory
from .checkpoint import Checkpoint, resolve_checkpoint
from .loading import load_chatterbox, save_conditionals
from .probes import compare_outputs, probe_outputs

logger = logging.getLogger(__name__)

DTYPES = {name: getattr(torch, name) for name in MERGE_DTYPES}
# Largest difference allowed between the merged (fp32) and the adapter model's outputs, relative to the largest
# output magnitude: PEFT's own merge tolerance. Casting to a half precision afterwards adds its rounding, which is
# measured and recorded (`cast_difference`), not a merge error.
MERGE_TOLERANCE = 1e-4
UPSTREAM_FILES = {"ve": "ve.pt", "s3gen": "s3gen.pt", "conds": "conds.pt"}


class MergeError(RuntimeError):
    """The merged model does not reproduce the adapter model within tolerance (nothing was written)."""


@dataclass
class MergeResult:
    """What `merge_adapter` wrote.

    Attributes:
        output_dir: The standalone model folder (`ChatterboxLatamTTS.from_pretrained` loads it).
        accent: The adapter's accent, when it was trained for one.
        check: The relative difference between the fp32 merged model and the adapter model on the probe inputs,
            per output (T3's speech logits, S3Gen's flow mel); config.json records it, and any cast's.
        upstream_layout: Whether upstream's `ve.pt` / `s3gen.pt` / `conds.pt` were written too.
    """

    output_dir: Path
    accent: str | None
    check: dict[str, float]
    upstream_layout: bool


def _merge_in_place(tts) -> None:
    from peft import PeftModel

    if isinstance(tts.t3, PeftModel):
        tts.t3 = tts.t3.merge_and_unload(safe_merge=True)
    if isinstance(tts.s3gen.flow, PeftModel):
        tts.s3gen.flow = tts.s3gen.flow.merge_and_unload(safe_merge=True)


def _state(module: torch.nn.Module, dtype: torch.dtype, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict with floating tensors under `prefix` cast to `dtype` (the rest kept as they are)."""
    return {k: (v.to(dtype) if v.is_floating_point() and k.startswith(prefix) else v).detach().cpu().contiguous()
            for k, v in module.state_dict().items()}


def is_full_size(checkpoint: Checkpoint) -> bool:
    """Upstream sizes (no reduced sizes in config.json): upstream's own loader can read it."""
    return not checkpoint.config.get("t3") and not checkpoint.config.get("s3gen")


def merge_adapter(adapter_dir: str | os.PathLike, output_dir: str | os.PathLike, base_model: str | None = None,
                  dtype: str = "float32", default_voice: Callable[[Any, dict[str, Any]], Any] | None = None,
                  upstream_layout: bool | None = None, accent: str | None = None,
                  extra_files: Callable[[Any, Path, dict[str, Any]], dict[str, Any]] | None = None) -> MergeResult:
    """Merges one adapter folder into its base and writes a standalone model folder (see the module docstring).

    `base_model` defaults to the base named in the adapter's adapter.json, at the revision recorded there
    (`model_revision`); a `base_model` given here is taken as given. A base whose tokenizer differs from the one
    the adapter recorded gets a warning naming both. `default_voice(model, adapter_metadata)`
    gives the model's default voice (upstream `Conditionals`); `synthesis.voices.voice_from(wav)` takes it from a
    recording cleaned as the training clips were. Without it the base's default voice (conds.pt) is kept when it
    has one.
    `upstream_layout` (default: for full-size bases) adds upstream's ve.pt / s3gen.pt / conds.pt.
    `extra_files(model, folder, config)` writes more files into the model folder from the merged fp32 model, before
    any cast and before the folder is checked and put in place, and returns entries for config.json (`config`: its
    entries so far); `training/merge.py --gguf` writes T3 for llama.cpp that way (`synthesis.cpu_fast.gguf`).

    Args:
        adapter_dir: The adapter folder (`checkpoints/final`, or one accent's).
        output_dir: Where the model folder goes; it is put in place only once the check passes.
        base_model: The base to merge into, taken as given; default: the one adapter.json names, at its revision.
        dtype: `float32`, `bfloat16` or `float16`: the weights are merged in fp32, then cast.
        default_voice: `(model, adapter_metadata) -> Conditionals`: the model's default voice.
        upstream_layout: Also write upstream's file layout, which `ChatterboxMultilingualTTS.from_local` loads.
        accent: The accent recorded in config.json (default: the adapter's).
        extra_files: `(model, folder, config) -> dict`: more files written from the merged fp32 model.

    Returns:
        Where the model went, and the check's figures.

    Raises:
        MergeError: The merged model, or the saved one loaded back, differs from the adapter model by more than
            1e-4 (relative); nothing is written.
        ValueError: Not an adapter folder, no base named, an unknown `dtype`, or `upstream_layout` for a reduced
            model.
    """
    from safetensors.torch import save_file

    from .lora import adapter_base, apply_adapters, is_adapter_dir, read_adapter_metadata

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {sorted(DTYPES)}.")
    adapter_dir = Path(adapter_dir)
    if not is_adapter_dir(adapter_dir):
        raise ValueError(f"{adapter_dir} is not an adapter folder (no t3/ or s3gen/ with adapter_config.json). "
                         "Pass the training output's final/ folder, or one of its checkpoint-N folders.")
    metadata = read_adapter_metadata(adapter_dir)
    base, variant, revision, support_revision = adapter_base(metadata, base_model)
    if not base:
        raise ValueError(f"{adapter_dir}/adapter.json does not name the base model: pass --base.")
    checkpoint = resolve_checkpoint(base, variant=variant, revision=revision, support_revision=support_revision)
    checkpoint.check_tokenizer(metadata.get("tokenizer"), f"The adapter {adapter_dir}")
    upstream_layout = is_full_size(checkpoint) if upstream_layout is None else upstream_layout
    if upstream_layout and not is_full_size(checkpoint):
        raise ValueError(f"{base} is a reduced model: upstream's from_local cannot load it, so it gets no upstream "
                         "layout (drop --upstream_layout).")
    accent = accent or metadata.get("accent")
    output_dir = Path(output_dir)

    tts = apply_adapters(load_chatterbox(checkpoint, "cpu"), adapter_dir)  # fp32 on the CPU
    reference = probe_outputs(tts)
    _merge_in_place(tts)
    check = compare_outputs(reference, probe_outputs(tts))
    if max(check.values()) > MERGE_TOLERANCE:
        raise MergeError(f"The merged model differs from the adapter model by {max(check.values()):.2e} (relative; "
                         f"tolerance {MERGE_TOLERANCE:.0e}): {check}. Nothing was written to {output_dir}.")
    if default_voice is not None:
        tts.conds = default_voice(tts, metadata)
    torch_dtype = DTYPES[dtype]
    generation = checkpoint.generation.name
    layout = LAYOUTS[MERGED_LAYOUTS[generation]]
    config = {
        "model_type": MODEL_TYPE, "layout": layout.name, "generation": generation,
        **{k: v for k, v in checkpoint.config.items() if k in ("t3", "s3gen", "tiny_version")},
        "base_model": base, "base_layout": checkpoint.layout.name, "model_revision": checkpoint.revision,
        "support_revision": checkpoint.support_revision,
        "tokenizer": checkpoint.tokenizer_record(), "adapter": str(adapter_dir),
        "adapter_metadata": metadata,
        "adapted": [part for part in ("t3", "s3gen") if (adapter_dir / part / "adapter_config.json").exists()],
        "language": metadata.get("language") or "es", "accent": accent,
        "torch_dtype": dtype, "default_voice": "conds.safetensors" if tts.conds is not None else None,
    }
    with staged_directory(output_dir) as staging:
        save_file(_state(tts.t3, torch_dtype), str(staging / layout.t3))
        # Only the flow is cast: the S3 tokenizer, CAMPPlus and HiFT are not merged into and stay as published.
        save_file(_state(tts.s3gen, torch_dtype, "flow."), str(staging / layout.s3gen))
        save_file(_state(tts.ve, torch.float32), str(staging / layout.ve))
        shutil.copyfile(checkpoint.paths["tokenizer"], staging / layout.tokenizer)
        if (checkpoint.directory / MEANFLOW_FILE).exists():  # a base that ships the meanflow decoder keeps it
            shutil.copyfile(checkpoint.directory / MEANFLOW_FILE, staging / MEANFLOW_FILE)
        if tts.conds is not None:
            save_conditionals(tts.conds, staging / layout.conds)
        if extra_files is not None:  # from the fp32 merge, whatever --dtype the safetensors get
            config.update(extra_files(tts, staging, dict(config)))
        if upstream_layout:
            torch.save(_state(tts.ve, torch.float32), staging / UPSTREAM_FILES["ve"])
            torch.save(_state(tts.s3gen, torch_dtype, "flow."), staging / UPSTREAM_FILES["s3gen"])
            if tts.conds is not None:
                tts.conds.save(staging / UPSTREAM_FILES["conds"])
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
        del tts
        # Load the result back the way users will, and check it against the adapter model before it is kept.
        loaded = compare_outputs(reference, probe_outputs(load_chatterbox(resolve_checkpoint(staging), "cpu")))
        config["merge_check"] = {"max_relative_difference": check, "tolerance": MERGE_TOLERANCE,
                                 "probe": "T3 speech logits, S3Gen flow mel (fixed seeded inputs)"}
        if dtype != "float32":
            config["merge_check"]["cast_difference"] = loaded
        elif max(loaded.values()) > MERGE_TOLERANCE:
            raise MergeError(f"The saved model, loaded back, differs from the adapter model by {loaded}: "
                             f"nothing was written to {output_dir}.")
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    logger.info("merged %s into %s (%s): max relative difference %s", adapter_dir, output_dir, dtype, check)
    return MergeResult(output_dir, accent, check, upstream_layout)

