"""PEFT LoRA on T3's Llama backbone and S3Gen's flow, and saving / loading just the adapters.

T3 is wrapped whole (so a head or embedding can be trained in `modules_to_save`), with LoRA on its Llama
backbone only. T3 and S3Gen need different target lists (Llama `q_proj...` against conformer `linear_q...` and diffusers
`to_q...`), so each gets its own `LoraConfig`. Everything that is not a LoRA weight is frozen: embeddings,
heads, the conditioning encoder, the S3 tokenizer, CAMPPlus and the HiFT vocoder. LoRA weights are created and
kept in fp32 whatever the autocast precision.

An adapter folder holds one PEFT sub-folder per adapted model:
    t3/adapter_model.safetensors + adapter_config.json
    s3gen/adapter_model.safetensors + adapter_config.json      (when S3Gen was adapted)
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig

logger = logging.getLogger(__name__)

T3_DIR, S3GEN_DIR = "t3", "s3gen"
ADAPTER_METADATA = "adapter.json"


def _lora_config(config: ModelConfig, target_modules, modules_to_save=None):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=target_modules, modules_to_save=modules_to_save, bias="none")


def _check_targets(module: nn.Module, targets: list[str], what: str) -> None:
    names = {name for name, _ in module.named_modules()}
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n, m in module.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"{what} has no module named {missing}; its Linear layers are named {leaves}.")


def add_t3_lora(t3: nn.Module, config: ModelConfig):
    """Wraps T3 in a PeftModel with LoRA on its Llama backbone only (`tfmr.*`; the perceiver's attention is left
    alone) and `modules_to_save` (e.g. a head or embedding that must be trained whole). Everything else is frozen."""
    from peft import get_peft_model

    _check_targets(t3.tfmr, config.target_modules, "T3")
    for name in config.modules_to_save or []:
        if not hasattr(t3, name):
            raise ValueError(f"modules_to_save: T3 has no module {name!r}; e.g. speech_head, speech_emb, text_emb.")
    t3.requires_grad_(False)
    pattern = rf"tfmr\..*\.({'|'.join(re.escape(t) for t in config.target_modules)})"
    return get_peft_model(t3, _lora_config(config, pattern, config.modules_to_save or None))


def add_s3gen_lora(flow: nn.Module, config: ModelConfig):
    """Wraps S3Gen's flow (conformer encoder + CFM decoder) in a PeftModel."""
    from peft import get_peft_model

    _check_targets(flow, config.s3gen_target_modules, "S3Gen flow")
    flow.requires_grad_(False)
    return get_peft_model(flow, _lora_config(config, list(config.s3gen_target_modules)))


def trainable_parameters(module: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in module.parameters())


def save_adapters(output_dir: str | Path, t3_peft=None, flow_peft=None, metadata: dict | None = None) -> Path:
    """Writes the adapters (safetensors + adapter_config.json) of whichever models were adapted, and
    `adapter.json` (base model, variant, revision, tokenizer, language, accent) so the folder alone says what to
    load it onto."""
    output_dir = Path(output_dir)
    for peft_model, name in ((t3_peft, T3_DIR), (flow_peft, S3GEN_DIR)):
        if peft_model is not None:
            peft_model.save_pretrained(str(output_dir / name), safe_serialization=True)
    if metadata is not None:
        (output_dir / ADAPTER_METADATA).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return output_dir


def read_adapter_metadata(adapter_dir: str | Path) -> dict:
    path = Path(adapter_dir) / ADAPTER_METADATA
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def adapter_base(metadata: dict, base_model: str | None = None
                 ) -> tuple[str | None, str | None, str | None, str | None]:
    """(base, layout, revision, support revision) to resolve an adapter's base with: the base its adapter.json names,
    in the layout and at the revision it was trained on (`model_revision`: the commit a Hub base was resolved at, so
    a base repo that moved on does not change what the adapter loads onto; `support_revision`: the same for the
    files a language pack takes from its support repo). A `base_model` given by the user is taken as given (its own
    layout, its newest revision)."""
    from ..constants import LAYOUTS

    if base_model:
        return base_model, None, None, None
    variant = metadata.get("model_variant")
    return (metadata.get("base_model"), variant if variant in LAYOUTS else None, metadata.get("model_revision"),
            metadata.get("support_revision"))


def is_adapter_dir(path: str | Path) -> bool:
    return any((Path(path) / part / "adapter_config.json").exists() for part in (T3_DIR, S3GEN_DIR))


def load_adapter_weights(adapter_dir: str | Path, t3_peft=None, flow_peft=None) -> None:
    """Loads saved adapter weights into already-wrapped models (resume); warns about keys that do not fit."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    for peft_model, name in ((t3_peft, T3_DIR), (flow_peft, S3GEN_DIR)):
        if peft_model is None:
            continue
        path = adapter_dir / name / "adapter_model.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: {adapter_dir} holds no {name} adapter.")
        result = set_peft_model_state_dict(peft_model, load_file(str(path)))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            logger.warning("%s adapter: %d unexpected keys, e.g. %s", name, len(unexpected), unexpected[:3])


def apply_adapters(tts, adapter_dir: str | Path, adapter_name: str = "default"):
    """Puts saved adapters onto a loaded upstream `ChatterboxMultilingualTTS` (inference): T3 and/or S3Gen.

    Called again with another `adapter_name` it adds that adapter beside the first (PEFT multi-adapter), so several
    accents share one base in memory; `set_adapter(name)` on `tts.t3` / `tts.s3gen.flow` switches between them.

    Args:
        tts: The loaded upstream model, as `loading.load_chatterbox` returns it.
        adapter_dir: An adapter folder (`t3/` and/or `s3gen/` with `adapter_config.json`, as training saves them).
        adapter_name: The name PEFT keeps the adapter under.

    Returns:
        `tts`, its T3 and/or S3Gen flow wrapped in `PeftModel`s, in eval mode.

    Raises:
        ValueError: The adapters already loaded adapt other parts (T3, S3Gen) than this one.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    parts = [(T3_DIR, tts, "t3"), (S3GEN_DIR, tts.s3gen, "flow")]
    for folder, owner, attribute in parts:
        path = adapter_dir / folder
        module = getattr(owner, attribute)
        wrapped = isinstance(module, PeftModel)
        if not (path / "adapter_config.json").exists():
            if wrapped:
                raise ValueError(f"{adapter_dir} has no {folder} adapter, but the adapters already loaded do: "
                                 "adapters loaded together must adapt the same models.")
            continue
        if wrapped:
            module.load_adapter(str(path), adapter_name=adapter_name)
        elif adapter_name != "default" and any(isinstance(getattr(o, a), PeftModel) for _, o, a in parts):
            raise ValueError(f"{adapter_dir} adapts {folder}, which the adapters already loaded do not: adapters "
                             "loaded together must adapt the same models.")
        else:
            setattr(owner, attribute, PeftModel.from_pretrained(module, str(path), adapter_name=adapter_name).eval())
    return tts


def accent_adapter_dirs(path: str | Path) -> dict[str, Path]:
    """Per-accent adapters under `path`: `<accent>/` or `<accent>/final/` holding an adapter (training's layout
    with `adapters: per_accent`, and the layout of a pushed per-accent adapter repo)."""
    found = {}
    for child in sorted(Path(path).iterdir()) if Path(path).is_dir() else []:
        for candidate in (child, child / "final"):
            if child.is_dir() and not child.name.startswith(("checkpoint-", ".")) and is_adapter_dir(candidate):
                found[child.name] = candidate
                break
    return found


def lora_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the LoRA weights of a module (for tests and diagnostics)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items() if "lora_" in k}

