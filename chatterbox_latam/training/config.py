"""The training config: `transformers.TrainingArguments` with the project's fields beside the Trainer's.

As trl's `SFTConfig`, `TrainingConfig` subclasses `TrainingArguments`: every Trainer field (`optim`,
`lr_scheduler_kwargs`, `tf32`, `torch_compile`, `gradient_checkpointing_kwargs`, `fsdp`...) is reachable from a
recipe and from the command line under its own name; the project's fields (losses, classifier-free guidance rows,
per-accent adapters, the audio samples that choose a checkpoint) sit beside them with help texts, and only the
defaults that differ from the Trainer's are redeclared. A recipe's `training:`, `output:` and `logging:` sections
all feed it, and its `aliases` keep the names recipes use (`batch_size`, `num_epochs`, `checkpoint_dir`,
`save_every`, `log_every`, `eval_every`, `resume`...).

`Recipe` is what `chatterbox-latam train` (and `training/run.py`) parses: the model, data and training configs, with the checks that span them run
before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from transformers import TrainingArguments

from ..constants import DEFAULT_ACCENT_MODEL
from ..data.config import DataConfig
from ..models.config import ModelConfig
from ..utils import default_device

BEST_MODEL_METRICS = {"eval_speaker_sim": True, "eval_dnsmos": True, "eval_accent_prob": True,
                      "eval_wer": False, "eval_loss": False}
"""The metrics a checkpoint can be chosen by, and whether higher is better."""

ADAPTER_MODES = ("shared", "per_accent")


@dataclass
class TrainingConfig(TrainingArguments):
    """How the adapters train: every `transformers.TrainingArguments` field, plus the project's own (a recipe's
    `training:`, `output:` and `logging:` sections)."""

    aliases: ClassVar[dict[str, str]] = {
        "batch_size": "per_device_train_batch_size",
        "num_epochs": "num_train_epochs",
        "checkpoint_dir": "output_dir",
        "save_every": "save_steps",
        "eval_every": "eval_steps",
        "log_every": "logging_steps",
        "resume": "resume_from_checkpoint",
        "hub_private": "hub_private_repo",
    }
    """The names recipes use for Trainer fields."""

    # -- the Trainer's fields whose defaults differ ------------------------------------------------------------------
    output_dir: str | None = field(default="runs/checkpoints", metadata={
        "help": "Checkpoints and the final adapters (final/; per accent: <accent>/final/)."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Clips per device per step."})
    per_device_eval_batch_size: int | None = field(default=None, metadata={
        "help": "Clips per device per validation step (default: per_device_train_batch_size)."})
    gradient_accumulation_steps: int = field(default=4, metadata={"help": "Steps accumulated per optimizer update."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of the LoRA weights."})
    num_train_epochs: float = field(default=10.0, metadata={
        "help": "Passes over the training split (unless max_steps)."})
    warmup_steps: float = field(default=500, metadata={"help": "Linear warm-up updates (a float < 1: a share of "
                                                                 "the run)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    logging_steps: float = field(default=100, metadata={"help": "Log losses every N updates."})
    logging_first_step: bool = field(default=True, metadata={"help": "Log the first update's losses too."})
    report_to: None | str | list[str] = field(default_factory=lambda: ["tensorboard"], metadata={
        "help": "Where logs go: tensorboard, wandb, trackio..., or none."})
    eval_strategy: str = field(default="steps", metadata={
        "help": "When the validation split is scored: steps (every eval_steps) or no; runs without a validation "
                "split skip it."})
    eval_steps: float | None = field(default=None, metadata={"help": "Evaluate every N updates (default: "
                                                                       "save_steps)."})
    save_steps: float = field(default=1000, metadata={"help": "Save a checkpoint every N updates."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep the last N checkpoints."})
    enable_jit_checkpoint: bool = field(default=True, metadata={
        "help": "SIGTERM (preemption, a Runpod stop) writes a complete checkpoint, then stops."})
    hub_strategy: str = field(default="checkpoint", metadata={
        "help": "With push_to_hub: push each checkpoint to last-checkpoint/ (resumable from the Hub) and the final "
                "adapters with their card at the end."})
    train_sampling_strategy: str = field(default="group_by_length", metadata={
        "help": "Sampler: group_by_length (clips of similar duration batched together: less padding), random, "
                "sequential; a streamed dataset is read in its shuffled order."})
    length_column_name: str = field(default="duration", metadata={"help": "The prepared dataset's length column."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={
        "help": "Every LoRA weight gets a gradient each step: DDP need not search for unused ones."})

    # -- the project's fields ---------------------------------------------------------------------------------------
    text_loss_weight: float = field(default=0.01, metadata={
        "help": "Weight of the text-token loss next to the speech-token loss (XTTS uses 0.01)."})
    s3gen_loss_weight: float = field(default=1.0, metadata={"help": "Weight of S3Gen's flow-matching loss."})
    uncond_fraction: float = field(default=0.1, metadata={
        "help": "Share of training rows shown as classifier-free guidance's unconditional branch (text embeddings "
                "zeroed as inference zeroes them, no text loss), so the adapter learns both branches CFG "
                "combines; 0 turns it off."})
    group_by_length: bool | None = field(default=None, metadata={
        "help": "Older recipes' switch: true sets train_sampling_strategy group_by_length, false random."})
    streaming_train: bool = field(default=False, metadata={
        "help": "Read the prepared dataset as an IterableDataset (data that does not fit; resume replays)."})
    adapters: str = field(default="shared", metadata={
        "help": "'shared': one adapter on all data; 'per_accent': one adapter per accent.",
        "choices": list(ADAPTER_MODES)})
    adapter_accents: list[str] | None = field(default=None, metadata={
        "help": "Accents to train per-accent adapters for (default: all in the dataset)."})
    record_batch_ids: bool = field(default=False, metadata={
        "help": "Write each batch's clip ids to <output_dir>/batches-rank<N>.jsonl (audits sharding and data "
                "order)."})
    wandb_project: str | None = field(default=None, metadata={
        "help": "Weights & Biases project (adds wandb to report_to; sets WANDB_PROJECT)."})
    eval_audio_samples: int = field(default=2, metadata={
        "help": "Validation sentences synthesised and logged as audio at each evaluation."})
    eval_audio_metrics: bool = field(default=True, metadata={
        "help": "Score those samples too: speaker similarity (resemblyzer) and DNSMOS, logged as eval/*."})
    eval_asr_model: str | None = field(default=None, metadata={
        "help": "ASR checkpoint (Hub id or folder, e.g. openai/whisper-large-v3) that also scores the samples' WER "
                "at each evaluation (eval/wer); none: no WER."})
    eval_accent_model: str | None = field(default=None, metadata={
        "help": f"Accent classifier (Hub id or folder, e.g. {DEFAULT_ACCENT_MODEL}) that also scores the "
                "probability of each sample's own accent at each evaluation (eval/accent_prob); none: not scored."})
    metric_for_best_model: str | None = field(default=None, metadata={
        "help": "Keep the checkpoint whose evaluation scored best on this metric as the final adapter (the one "
                "pushed and merged): eval_speaker_sim, eval_dnsmos, eval_accent_prob (with eval_accent_model), "
                "eval_wer (with eval_asr_model) or eval_loss; the audio metrics score eval_audio_samples "
                "sentences of speakers not in training. Default: the last checkpoint."})

    def __post_init__(self):
        if self.per_device_eval_batch_size is None:
            self.per_device_eval_batch_size = self.per_device_train_batch_size
        if self.group_by_length is not None:
            self.train_sampling_strategy = "group_by_length" if self.group_by_length else "random"
        if self.streaming_train:
            if self.max_steps is None or self.max_steps < 0:
                raise ValueError("streaming_train needs max_steps: an IterableDataset has no length to count epochs.")
            self.train_sampling_strategy = "random"  # the stream's own shuffled order; no sampler sees it
        if self.eval_steps is None:
            self.eval_steps = self.save_steps
        if self.adapters not in ADAPTER_MODES:
            raise ValueError(f"adapters={self.adapters!r}: use one of {ADAPTER_MODES}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate}: must be > 0.")
        if not 0 <= self.uncond_fraction < 1:
            raise ValueError(f"uncond_fraction={self.uncond_fraction}: use a share in [0, 1).")
        if self.save_steps <= 0:
            raise ValueError(f"save_steps={self.save_steps}: must be > 0.")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub is set but hub_model_id is not: set hub_model_id: USER/NAME.")
        if isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        if self.wandb_project and "wandb" not in (self.report_to or []):
            self.report_to = [r for r in self.report_to or [] if r != "none"] + ["wandb"]
        self._check_best_metric()
        if not self.use_cpu and default_device() == "cpu":
            self.use_cpu = True  # the Trainer's CPU path (bf16 autocast on a CPU asks for it)
        super().__post_init__()

    def _check_best_metric(self) -> None:
        best = self.metric_for_best_model
        if not best:
            return
        if not best.startswith("eval_"):
            best = self.metric_for_best_model = f"eval_{best}"
        if best not in BEST_MODEL_METRICS:
            raise ValueError(f"metric_for_best_model={best!r}: use one of {sorted(BEST_MODEL_METRICS)}.")
        self.greater_is_better = BEST_MODEL_METRICS[best]
        self.load_best_model_at_end = True
        if best != "eval_loss" and (self.eval_audio_samples <= 0 or not self.eval_audio_metrics):
            raise ValueError(f"metric_for_best_model={best} scores synthesised samples: set eval_audio_samples > 0 "
                             "and eval_audio_metrics true.")
        needs = {"eval_wer": "eval_asr_model", "eval_accent_prob": "eval_accent_model"}
        if best in needs and not getattr(self, needs[best]):
            raise ValueError(f"metric_for_best_model={best} needs a model to score it: set {needs[best]}.")


RECIPE_SECTIONS = {
    "model": ModelConfig,
    "data": DataConfig,
    "training": TrainingConfig,
    "output": TrainingConfig,
    "logging": TrainingConfig,
}
"""The sections `chatterbox-latam train` reads, and the dataclass each feeds."""


@dataclass
class Recipe:
    """A training recipe: `Recipe(*parse_recipe(RECIPE_SECTIONS, argv))`. Building it runs the checks that span
    sections, so a recipe that cannot train fails before any model loads."""

    model: ModelConfig
    data: DataConfig
    training: TrainingConfig

    def __post_init__(self):
        best = self.training.metric_for_best_model
        if best and best != "eval_loss" and not self.model.train_t3:
            raise ValueError(f"metric_for_best_model={best} scores speech T3 synthesises: it needs train_t3 true "
                             "(or choose by eval_loss).")
        if best and self.data.validation_size <= 0 and not self.data.validation_speakers \
                and not self.data.validation_path:
            raise ValueError(f"metric_for_best_model={best} needs evaluations: prepare a validation split "
                             "(validation_size > 0, validation_speakers or validation_path).")
