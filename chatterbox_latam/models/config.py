"""What the model stage is asked: which Chatterbox to start from and the LoRA put on it (a recipe's `model:`
section), and what `merge` writes. No torch import: recipes validate without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..constants import GGUF_TYPES, LAYOUTS, T3_MODELS


T3_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
S3GEN_LORA_TARGETS = ["linear_q", "linear_k", "linear_v", "linear_out", "to_q", "to_k", "to_v", "to_out.0"]
MERGE_DTYPES = ("float32", "bfloat16", "float16")


def layout_name(variant: str | None = None, t3_model: str | None = None) -> str | None:
    """The layout a recipe asks for: `model_variant` (a `LAYOUTS` name) or upstream's `t3_model` (v2 / v3)."""
    if t3_model is not None and t3_model not in T3_MODELS:
        raise ValueError(f"t3_model={t3_model!r}: use one of {sorted(T3_MODELS)} (upstream's names for the T3 files "
                         "of ResembleAI/chatterbox).")
    if variant is not None and variant not in LAYOUTS:
        raise ValueError(f"model_variant={variant!r}: use one of {sorted(LAYOUTS)} or leave it unset.")
    if variant and t3_model and variant != T3_MODELS[t3_model]:
        raise ValueError(f"model_variant={variant!r} and t3_model={t3_model!r} disagree: set one of them.")
    return variant or (T3_MODELS[t3_model] if t3_model else None)


@dataclass
class ModelConfig:
    """Which Chatterbox to start from, and the LoRA put on it (the usual range: rank 16-64, alpha 32-128)."""

    base_model: str = field(
        default="ResembleAI/chatterbox",
        metadata={"help": "Hub repo id or local folder of the base checkpoint (upstream file layout)."},
    )
    model_variant: str | None = field(
        default=None,
        metadata={
            "help": f"Checkpoint layout, one of {sorted(LAYOUTS)}; default: recognised from the repo id or the files."
        },
    )
    t3_model: str | None = field(
        default=None,
        metadata={"help": f"Which T3 of ResembleAI/chatterbox, upstream's names {sorted(T3_MODELS)} (default v2; v3 is "
                          "decoded as upstream main decodes it). The language packs are v3 finetunes already."},
    )
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit)."})
    train_s3gen: bool = field(
        default=False,
        metadata={"help": "Also adapt S3Gen; preparation then also stores 24 kHz mels and CAMPPlus x-vectors."},
    )
    train_t3: bool = field(default=True, metadata={"help": "Adapt T3 (text -> speech tokens), the main job."})
    lora_rank: int = field(default=32, metadata={"help": "Rank of the LoRA matrices."})
    lora_alpha: int = field(default=64, metadata={"help": "LoRA scaling (the update is multiplied by alpha / rank)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] = field(
        default_factory=lambda: list(T3_LORA_TARGETS),
        metadata={"help": "T3 (Llama) Linear layers to adapt; add gate_proj up_proj down_proj for the MLP."},
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "T3 modules trained whole and saved with the adapter (e.g. speech_head, or text_emb after "
                          "adding an accent token)."},
    )
    s3gen_target_modules: list[str] = field(
        default_factory=lambda: list(S3GEN_LORA_TARGETS),
        metadata={"help": "S3Gen flow layers to adapt when train_s3gen is set (conformer and decoder attention)."},
    )

    def __post_init__(self):
        layout_name(self.model_variant, self.t3_model)  # raises with what to change
        if self.lora_rank < 1 or self.lora_alpha < 1:
            raise ValueError(f"lora_rank={self.lora_rank}, lora_alpha={self.lora_alpha}: both must be >= 1.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout={self.lora_dropout}: use a value in [0, 1).")
        if not (self.train_t3 or self.train_s3gen):
            raise ValueError("train_t3 and train_s3gen are both false: set at least one.")
        if self.train_t3 and not self.target_modules:
            raise ValueError("target_modules is empty: list T3 layers to adapt, e.g. [q_proj, k_proj, v_proj, o_proj].")


@dataclass
class MergeConfig:
    """What `chatterbox-latam merge` asks for."""

    adapter: list[str] = field(metadata={
        "help": "Adapter folder (training's final/), or ACCENT=PATH pairs, one merged model each (repeatable).",
        "action": "extend"})
    output_dir: str = field(metadata={"help": "Folder of the merged model (per accent: its parent)."})
    base: str | None = field(default=None, metadata={"help": "Base model folder or Hub repo id (default: "
                                                             "adapter.json's)."})
    dtype: str = field(default="float32", metadata={"help": "Precision of the saved weights.",
                                                    "choices": list(MERGE_DTYPES)})
    default_voice: str | None = field(default=None, metadata={"help": "WAV that becomes the model's default voice."})
    upstream_layout: bool | None = field(default=None, metadata={
        "help": "Also write upstream's ve.pt / s3gen.pt / conds.pt (default: for full-size bases; false: never).",
        "nargs": "?", "const": True})
    gguf: str | None = field(default=None, metadata={
        "help": "Also write T3's backbone as a GGUF for llama.cpp (t3-TYPE.gguf): q4_0 (bare --gguf), q8_0, f16 or "
                "f32.", "nargs": "?", "const": "q4_0", "choices": list(GGUF_TYPES)})
