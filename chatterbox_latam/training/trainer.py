"""A thin `transformers.Trainer` subclass for Chatterbox LoRA.

The Trainer does the loop, checkpointing, resume, logging and distribution; this subclass only
- computes the loss with `ChatterboxForTraining` and logs text, speech and S3Gen losses and speech tokens/s on
  their own (the way trl's SFTTrainer keeps a metrics dict);
- keeps the dataset columns the collator needs (`_set_signature_columns_if_needed`);
- saves and loads adapters only (safetensors + adapter_config.json per adapted model), and marks a checkpoint
  complete once everything in it is written, so an interrupted save is never resumed from.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer

from ..compat import checkpoint_root, keep_signature_columns, prepared_inputs
from ..models.lora import load_adapter_weights, save_adapters
from ..utils import write_atomic
from .checkpoints import COMPLETE_MARKER

logger = logging.getLogger(__name__)
TRAINING_COLUMNS = ["id", "speaker_id", "text_tokens", "speech_tokens", "prompt_speech_tokens", "prompt_speaker_emb",
                    "prompt_source", "supervised_speech_tokens", "duration", "speech_feat", "xvector", "accent"]


def unwrap_model(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _load_adapters(model: nn.Module, folder: str) -> None:
    """The adapters of a checkpoint `folder` into the (possibly wrapped) `ChatterboxForTraining`'s T3 and flow."""
    model = unwrap_model(model)
    load_adapter_weights(folder, model.t3, model.flow)


class ChatterboxTrainer(Trainer):
    """Trainer for `ChatterboxForTraining` (see module docstring). The Trainer's private hooks it overrides are
    registered in `compat` with the transformers versions they were checked against."""

    def __init__(self, *args, record_batch_ids: bool = False, adapter_metadata: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_batch_ids = record_batch_ids
        self.adapter_metadata = adapter_metadata
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._speech_tokens = 0
        self._interval_start = time.perf_counter()

    def _set_signature_columns_if_needed(self):
        keep_signature_columns(self, TRAINING_COLUMNS)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs.pop("ids", None)
        mode = "train" if model.training else "eval"
        if self.record_batch_ids and ids is not None and mode == "train":
            path = Path(self.args.output_dir) / f"batches-rank{self.args.process_index}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": self.state.global_step, "ids": ids}) + "\n")
        outputs = model(**inputs)
        for key in ("loss_text", "loss_speech", "loss_s3gen"):
            if key in outputs:
                self._metrics[mode][key].append(outputs[key].detach().float().item())
        if "speech_tokens" in outputs and mode == "train":
            self._speech_tokens += int(outputs["speech_tokens"].item())
        loss = outputs["loss"]
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = prepared_inputs(self, inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        averaged = {k: sum(v) / len(v) for k, v in self._metrics[mode].items() if v}
        if mode == "eval":
            averaged = {f"eval_{k}": v for k, v in averaged.items()}
        elif self._speech_tokens:
            now = time.perf_counter()
            averaged["speech_tokens_per_second"] = self._speech_tokens / max(now - self._interval_start, 1e-9)
            self._speech_tokens, self._interval_start = 0, now
        logs.update(averaged)
        self._metrics[mode].clear()
        super().log(logs, start_time)

    # -- saving only the adapters ----------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = unwrap_model(self.model)
        save_adapters(output_dir, model.t3, model.flow, self.adapter_metadata)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        _load_adapters(model or self.model, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        """`load_best_model_at_end`: the adapters of the checkpoint that scored best on `metric_for_best_model`
        (the Trainer's own loader looks for whole-model or single-PEFT weights, which these checkpoints do not
        hold)."""
        logger.info("loading the best checkpoint, %s (%s %s)", self.state.best_model_checkpoint,
                    self.args.metric_for_best_model, self.state.best_metric)
        _load_adapters(self.model, self.state.best_model_checkpoint)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """With `push_to_hub`, each checkpoint's adapters go to the repo (under `<accent>/` for per-accent
        adapters) in the background, the way the Trainer pushes weights; resumable training state is the job of
        `training/sync_checkpoints.py`, which only ever sends complete checkpoints."""
        from huggingface_hub import HfApi
        from transformers.utils.hub import PushInProgress

        from ..models.lora import ADAPTER_METADATA, S3GEN_DIR, T3_DIR

        if not self.is_world_process_zero():
            return
        if self.push_in_progress is not None and not self.push_in_progress.is_done():
            return  # the previous push is still going: skip this one, as the Trainer does
        accent = (self.adapter_metadata or {}).get("accent")
        job = HfApi().upload_folder(
            repo_id=self.hub_model_id, folder_path=checkpoint_folder, path_in_repo=f"{accent}/" if accent else "",
            allow_patterns=[ADAPTER_METADATA, f"{T3_DIR}/*", f"{S3GEN_DIR}/*"], run_as_future=True,
            commit_message=f"Training in progress, step {self.state.global_step}", token=self.args.hub_token,
        )
        self.push_in_progress = PushInProgress([job])

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(checkpoint_root(self, trial)) / f"checkpoint-{self.state.global_step}"
            marker = {"global_step": self.state.global_step, "time": time.time()}
            write_atomic(folder / COMPLETE_MARKER, json.dumps(marker).encode())

