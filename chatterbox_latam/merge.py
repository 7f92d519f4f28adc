"""Merging LoRA adapters into the base weights: one standalone model per adapter, checked against the adapter.

The merge runs in fp32 on the CPU (PEFT's `merge_and_unload`, which also folds `modules_to_save` in), and only
then casts to the requested dtype: merging fp32 LoRA deltas into bf16 weights would round them away. The output
is a checkpoint folder in the `merged` layout of `chatterbox_latam.modeling` (all safetensors):

    t3_mtl23ls_v2.safetensors (v3 bases: t3_mtl23ls_v3)  s3gen.safetensors  ve.safetensors  grapheme_mtl_...json
    conds.safetensors (the default voice)  config.json (sizes, base, accent, merge check)  README.md (the card)

A full-size merge also gets upstream's own file names for the files upstream reads as torch pickles (`ve.pt`,
`s3gen.pt`, `conds.pt`, plain tensor state dicts that load with `weights_only=True`), so
`ChatterboxMultilingualTTS.from_local(folder)` loads it too. Reduced (tiny) models cannot be loaded by upstream,
which hard-codes the full size, so they get no such copies.

The merge is checked twice on fixed probe inputs (T3 logits, S3Gen mel): the fp32 merged model against the adapter
model, and, before the folder is put in place, the saved model loaded back with `ChatterboxLatamTTS.from_pretrained`
(which also measures what a cast to bf16/fp16 changes). The differences go into config.json; a merge beyond
`MERGE_TOLERANCE` fails without leaving an output behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .fileio import staged_directory
from .modeling import CONFIG_NAME, LAYOUTS, MERGED_LAYOUTS, MODEL_TYPE, Checkpoint, load_chatterbox, \
    resolve_checkpoint, save_conditionals

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Largest difference allowed between the merged (fp32) and the adapter model's outputs, relative to the largest
# output magnitude: PEFT's own merge tolerance. Casting to a half precision afterwards adds its rounding, which is
# measured and recorded (`cast_difference`), not a merge error.
MERGE_TOLERANCE = 1e-4
UPSTREAM_FILES = {"ve": "ve.pt", "s3gen": "s3gen.pt", "conds": "conds.pt"}


class MergeError(RuntimeError):
    """The merged model does not reproduce the adapter model within tolerance (nothing was written)."""


@dataclass
class MergeResult:
    output_dir: Path
    accent: str | None
    check: dict[str, float]
    upstream_layout: bool


def probe_inputs(t3, seed: int = 0) -> dict[str, Any]:
    """A fixed conditioning prefix, text and speech sequence to compare T3 outputs on."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    hp = t3.hp
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, hp.text_tokens_dict_size - 1, (1, 24), generator=g)
    text[:, 0], text[:, -1] = hp.start_text_token, hp.stop_text_token
    speech = torch.randint(0, 6561, (1, 40), generator=g)
    speech[:, 0], speech[:, -1] = hp.start_speech_token, hp.stop_speech_token
    emb = torch.randn(1, hp.speaker_embed_size, generator=g)
    cond = T3Cond(speaker_emb=emb / emb.norm(), emotion_adv=0.5 * torch.ones(1, 1, 1),
                  cond_prompt_speech_tokens=torch.randint(0, 6561, (1, hp.speech_cond_prompt_len or 1), generator=g))
    return dict(t3_cond=cond, text_tokens=text, text_token_lens=torch.tensor([text.shape[1]]), speech_tokens=speech,
                speech_token_lens=torch.tensor([speech.shape[1]]))


@torch.inference_mode()
def probe_outputs(tts) -> dict[str, torch.Tensor]:
    """T3 speech logits and S3Gen's flow output (mel) on fixed probe inputs: what a merge must preserve."""
    t3 = tts.t3
    inputs = probe_inputs(t3)
    out = {"t3": t3(**inputs).speech_logits.float()}
    g = torch.Generator().manual_seed(1)
    flow = tts.s3gen.flow
    tokens = torch.randint(0, 6561, (1, 30), generator=g)
    prompt = torch.randint(0, 6561, (1, 10), generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the CFM starts from torch.randn_like noise
        mel, _ = flow.inference(token=tokens, token_len=torch.tensor([30]), prompt_token=prompt,
                                prompt_token_len=torch.tensor([10]), prompt_feat=torch.randn(1, 20, 80, generator=g),
                                prompt_feat_len=None, embedding=torch.randn(1, 192, generator=g), finalize=True)
    out["s3gen"] = mel.float()
    return out


def compare_outputs(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per model: the largest absolute difference relative to the largest reference magnitude."""
    return {name: float((reference[name] - other[name]).abs().max() / reference[name].abs().max().clamp_min(1e-12))
            for name in reference}


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
                  dtype: str = "float32", default_voice: str | os.PathLike | None = None,
                  upstream_layout: bool | None = None, accent: str | None = None) -> MergeResult:
    """Merges one adapter folder into its base and writes a standalone model folder (see the module docstring).

    `base_model` defaults to the base named in the adapter's adapter.json. `default_voice` (a WAV) becomes the
    model's default voice; without it the base's default voice (conds.pt) is kept when it has one.
    `upstream_layout` (default: for full-size bases) adds upstream's ve.pt / s3gen.pt / conds.pt.
    """
    from safetensors.torch import save_file

    from .inference import ChatterboxLatamTTS
    from .lora import apply_adapters, is_adapter_dir, read_adapter_metadata

    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {sorted(DTYPES)}.")
    adapter_dir = Path(adapter_dir)
    if not is_adapter_dir(adapter_dir):
        raise ValueError(f"{adapter_dir} is not an adapter folder (no t3/ or s3gen/ with adapter_config.json). "
                         "Pass the training output's final/ folder, or one of its checkpoint-N folders.")
    metadata = read_adapter_metadata(adapter_dir)
    base = base_model or metadata.get("base_model")
    if not base:
        raise ValueError(f"{adapter_dir}/adapter.json does not name the base model: pass --base.")
    checkpoint = resolve_checkpoint(base, variant=metadata.get("model_variant") if metadata.get("model_variant")
                                    in LAYOUTS else None)
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
    if default_voice is not None:  # cleaned as the training clips were, like every reference at inference
        from .inference import reference_conditionals

        tts.conds = reference_conditionals(tts, default_voice, cleaning=metadata.get("reference_cleaning"))
    torch_dtype = DTYPES[dtype]
    generation = checkpoint.generation.name
    layout = LAYOUTS[MERGED_LAYOUTS[generation]]
    config = {
        "model_type": MODEL_TYPE, "layout": layout.name, "generation": generation,
        **{k: v for k, v in checkpoint.config.items() if k in ("t3", "s3gen", "tiny_version")},
        "base_model": base, "base_layout": checkpoint.layout.name, "adapter": str(adapter_dir),
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
        if tts.conds is not None:
            save_conditionals(tts.conds, staging / layout.conds)
        if upstream_layout:
            torch.save(_state(tts.ve, torch.float32), staging / UPSTREAM_FILES["ve"])
            torch.save(_state(tts.s3gen, torch_dtype, "flow."), staging / UPSTREAM_FILES["s3gen"])
            if tts.conds is not None:
                tts.conds.save(staging / UPSTREAM_FILES["conds"])
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
        del tts
        # Load the result back the way users will, and check it against the adapter model before it is kept.
        merged = ChatterboxLatamTTS.from_pretrained(staging, device="cpu")
        loaded = compare_outputs(reference, probe_outputs(merged.tts))
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
