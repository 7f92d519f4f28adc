"""The training job: base checkpoint + prepared dataset -> LoRA adapters, one shared or one per accent.

`run_finetune` is what `training/run.py` calls under `accelerate launch` or `torchrun`. It loads the base with
the project's one loader, wraps T3 (and S3Gen's flow) with PEFT, tokenizes the prepared dataset's text once
(`Dataset.map` under `main_process_first`, cached), and hands everything to `ChatterboxTrainer`.
"""

from __future__ import annotations

import logging
import os
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..compat import finish_pushes
from ..constants import S3GEN_SR
from ..data.collator import ChatterboxCollator, PromptPool, usable_rows
from ..data.dataset import load_prepared, reference_audio, row_index, tokenize_dataset
from ..models.checkpoint import resolve_checkpoint
from ..models.loading import load_s3gen, load_t3, load_text_tokenizer, t3_config
from ..models.lora import (
    add_s3gen_lora,
    add_t3_lora,
    save_adapters,
    trainable_parameters,
)
from .callbacks import AudioSamplesCallback, PromptEpochCallback, Scorer
from .checkpoints import find_resume_checkpoint
from .config import Recipe, TrainingConfig
from .model import ChatterboxForTraining
from .trainer import ChatterboxTrainer

logger = logging.getLogger(__name__)

FINAL_DIR = "final"


def training_arguments(recipe: Recipe, output_dir: str, has_eval: bool) -> TrainingConfig:
    """The recipe's training config for one adapter's run: its own output folder, and no evaluation where the
    prepared data has no validation rows."""
    args = recipe.training
    if args.wandb_project:
        os.environ.setdefault("WANDB_PROJECT", args.wandb_project)
    changes: dict[str, Any] = {"output_dir": output_dir}
    if not has_eval:
        changes.update(eval_strategy="no", eval_steps=None, load_best_model_at_end=False)
    return dataclasses.replace(args, **changes)


def recipe_summary(recipe: Recipe, n_train: int | None = None) -> dict[str, Any]:
    """The settings a model card shows (kept in adapter.json, so a pushed adapter documents how it was trained)."""
    m, t = recipe.model, recipe.training
    adapted = [name for name, on in (("T3", m.train_t3), ("S3Gen flow", m.train_s3gen)) if on]
    summary = {
        "adapted": ", ".join(adapted),
        "LoRA rank / alpha / dropout": f"{m.lora_rank} / {m.lora_alpha} / {m.lora_dropout}",
        "T3 target modules": ", ".join(m.target_modules),
        "trained whole (modules_to_save)": ", ".join(m.modules_to_save or []) or "none",
        "learning rate": t.learning_rate,
        "batch size x accumulation": f"{t.per_device_train_batch_size} x {t.gradient_accumulation_steps}",
        "steps" if t.max_steps and t.max_steps > 0 else "epochs": t.max_steps if t.max_steps and t.max_steps > 0
        else t.num_train_epochs,
        "text loss weight": t.text_loss_weight,
        "unconditional (CFG) rows": t.uncond_fraction,
        "precision": "bf16 autocast" if t.bf16 else "fp32",
    }
    if m.train_s3gen:
        summary["S3Gen target modules"] = ", ".join(m.s3gen_target_modules)
    if n_train is not None:
        summary["training clips"] = n_train
    return summary


def build_model(recipe: Recipe, checkpoint) -> tuple[ChatterboxForTraining, Any]:
    """Base T3 (and S3Gen) with LoRA. Returns the training module and the full S3Gen when it is trained or needed
    for the audio samples at evaluation (None otherwise: it is the larger half of the checkpoint to load)."""
    m = recipe.model
    t3 = load_t3(checkpoint, "cpu") if m.train_t3 else None
    needs_s3gen = m.train_s3gen or (m.train_t3 and recipe.training.eval_audio_samples > 0)
    s3gen = load_s3gen(checkpoint, "cpu") if needs_s3gen else None
    flow = None
    if t3 is not None:
        t3 = add_t3_lora(t3, m)
        t3.train()
    if m.train_s3gen:
        s3gen.requires_grad_(False)
        flow = add_s3gen_lora(s3gen.flow, m)
        flow.train()
    model = ChatterboxForTraining(t3, flow, recipe.training.text_loss_weight, recipe.training.s3gen_loss_weight)
    trainable, total = trainable_parameters(model)
    logger.info("trainable parameters: %d of %d (%.3f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model, s3gen


def _accent_subsets(dataset, recipe: Recipe) -> dict[str, Any]:
    if recipe.training.adapters == "shared":
        return {"shared": dataset}
    accents = recipe.training.adapter_accents or sorted(set(dataset["train"]["accent"]) - {""})
    subsets = {}
    for accent in accents:
        subset = dataset.filter(lambda row: row["accent"] == accent, desc=f"accent {accent}")
        if len(subset["train"]) == 0:
            raise ValueError(f"No training clips with accent {accent!r}; accents present: "
                             f"{sorted(set(dataset['train']['accent']))}.")
        subsets[accent] = subset
    return subsets


def _audio_samples(dataset, recipe: Recipe, clips=None) -> list[dict[str, Any]]:
    """A few validation sentences with their reference audio (the prompt's clips joined, as preparation built the
    prompt), for the audio-sample callback and so for checkpoint selection: of speakers not in training where the
    validation split holds some (`validation_speakers`), else of trained speakers. Never the test split, which only
    evaluation reads. Always the same rows, so evaluations compare. `clips`: the whole prepared dataset where
    `dataset` is a part of it (one accent's rows): a reference's clips are looked up there."""
    count = recipe.training.eval_audio_samples
    if count <= 0 or "validation" not in dataset or len(dataset["validation"]) == 0:
        return []
    clips = clips if clips is not None else dataset
    where = row_index(clips)
    trained = set(dataset["train"]["speaker_id"])
    validation = dataset["validation"]
    if "prompt_source" in validation.column_names:  # a reference from other clips, never the row's own audio
        validation = validation.filter(lambda source: source == "other", input_columns="prompt_source")
    unseen = validation.filter(lambda speaker: speaker not in trained, input_columns="speaker_id")
    if len(unseen):
        validation = unseen
        logger.info("audio samples: %d validation sentences of speakers not in training", min(count, len(unseen)))
    elif recipe.training.metric_for_best_model not in (None, "eval_loss"):
        logger.warning("no speakers outside training in the validation split: the checkpoint is chosen on "
                       "validation sentences of trained speakers (prepare with validation_speakers for unseen ones).")
    samples = []
    for row in validation.select(range(min(count, len(validation)))):
        reference, reference_sr = reference_audio(clips, where, row["prompt_ids"])
        samples.append({**{k: row[k] for k in ("text", "text_tokens", "prompt_speech_tokens", "prompt_speaker_emb",
                                                "accent", "speaker_id")},
                        "reference": reference, "reference_sr": reference_sr})
    return samples


def _synthesizer(s3gen, generation):
    """Synthesis of one validation sample as inference will decode it with this adapter: the base's `generation`
    (repetition penalty, the last token's audio), upstream's alignment heuristics only where the adapter leaves the
    attention they read alone (`decoding.default_alignment`), and the token budget the sentence's text gets."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    from ..synthesis.config import GenerationSettings
    from ..synthesis.decoding import default_alignment, fast_decode
    from ..synthesis.tts import default_max_new_tokens
    from ..synthesis.vocoder import tokens_to_wav

    settings = GenerationSettings().for_generation(generation)

    def synthesize(model: ChatterboxForTraining, sample: dict[str, Any]):
        t3 = model.t3
        was_training = model.training
        model.eval()
        s3gen.eval()
        try:
            device = t3.device
            cond = T3Cond(
                speaker_emb=torch.tensor([sample["prompt_speaker_emb"]], device=device),
                cond_prompt_speech_tokens=torch.tensor([sample["prompt_speech_tokens"]], device=device),
                emotion_adv=torch.full((1, 1, 1), 0.5, device=device),
            )
            hp = t3.hp
            text = torch.tensor([[hp.start_text_token, *sample["text_tokens"], hp.stop_text_token]])
            with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
                torch.manual_seed(0)
                # the budget inference gives the sentence, from its text (not from the recording's length)
                tokens = fast_decode(t3, cond, text, max_new_tokens=default_max_new_tokens(sample["text"]),
                                     settings=settings, alignment=default_alignment(generation, t3))[0]
            s3gen.to(device)
            ref = s3gen.embed_ref(torch.as_tensor(sample["reference"][: 10 * sample["reference_sr"]]),
                                  sample["reference_sr"], device=device)
            return tokens_to_wav(s3gen, tokens, ref, drop_last_token=generation.drop_last_token)
        finally:
            model.train(was_training)  # what trains, and only that (`ChatterboxForTraining.train`)

    return synthesize


@dataclass
class TrainingResult:
    """Where an adapter was written, and its speech loss on the first and the last logged training batches."""

    name: str
    adapter_dir: Path
    first_speech_loss: float | None
    last_speech_loss: float | None

    def describe(self) -> str:
        text = f"{self.name}: adapters in {self.adapter_dir}"
        if self.first_speech_loss and self.last_speech_loss:
            text += (f"; speech loss {self.first_speech_loss:.3f} -> {self.last_speech_loss:.3f} "
                     f"({self.first_speech_loss / self.last_speech_loss:.1f}x lower)")
        return text


def preparation_settings(recipe: Recipe) -> dict[str, Any]:
    """How the training text and clips were prepared (the prepared folder's settings.json, else the recipe's data
    section): inference must treat text and references the same way, so the adapter records it."""
    import json

    path = Path(recipe.data.prepared_dir) / "settings.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else vars(recipe.data)
    return {"normalize_text": bool(data.get("normalize_text", True)),
            "max_prompt_seconds": float(data.get("max_prompt_seconds", recipe.data.max_prompt_seconds)),
            "reference_cleaning": {key: data.get(key, getattr(recipe.data, key))
                                   for key in ("trim_silence", "trim_top_db", "target_loudness")}}


def run_finetune(recipe: Recipe, scorer: Scorer | None = None) -> list[TrainingResult]:
    """Trains the adapters the recipe asks for (one shared, or one per accent). `scorer` replaces how the audio
    samples are scored at each evaluation (`callbacks.ListeningScores` by default)."""
    from transformers.trainer_utils import set_seed

    checkpoint = resolve_checkpoint(recipe.model.base_model, variant=recipe.model.model_variant,
                                    revision=recipe.model.model_revision, t3_model=recipe.model.t3_model)
    tokenizer = load_text_tokenizer(checkpoint)
    dataset = load_prepared(recipe.data.prepared_dir)
    if recipe.model.train_s3gen and "speech_feat" not in dataset["train"].column_names:
        raise ValueError(f"{recipe.data.prepared_dir} has no S3Gen features: prepare it with --train_s3gen true.")
    from accelerate import PartialState

    with PartialState().main_process_first():
        dataset = tokenize_dataset(dataset, tokenizer, recipe.data.language)
    outputs = []
    best = recipe.training.metric_for_best_model
    for name, subset in _accent_subsets(dataset, recipe).items():
        output_dir = recipe.training.output_dir if name == "shared" else os.path.join(recipe.training.output_dir,
                                                                                       name)
        # The data's own checks first: a run that cannot choose its checkpoint stops before any model loads.
        with PartialState().main_process_first():
            train_split = usable_rows(subset["train"])
            eval_split = usable_rows(subset["validation"]) if "validation" in subset else None
        eval_split = eval_split if eval_split is not None and len(eval_split) else None
        if best and eval_split is None:
            raise ValueError(f"metric_for_best_model={best} needs evaluations: {recipe.data.prepared_dir} has no "
                             "validation rows (prepare with validation_size > 0, validation_speakers or "
                             "validation_path).")
        samples = _audio_samples(subset, recipe, dataset) if recipe.model.train_t3 and eval_split else []
        if best and best != "eval_loss" and not samples:
            raise ValueError(f"metric_for_best_model={best} scores synthesised samples, and the validation split "
                             "has no row with a reference of other clips to speak with.")
        left_out = len(subset["train"]) - len(train_split)
        if left_out:
            logger.warning("%s: %d training rows left out (each a speaker's only clip, with no other clip to prompt "
                           "it; see the preparation summary).", name, left_out)

        set_seed(recipe.training.seed)
        model, s3gen = build_model(recipe, checkpoint)
        hp = t3_config(checkpoint.config, checkpoint.layout.multilingual)
        pool = PromptPool.from_split(train_split) if "reference_ids" in train_split.column_names else None
        collator = ChatterboxCollator(hp.start_text_token, hp.stop_text_token, hp.start_speech_token,
                                      hp.stop_speech_token, with_s3gen=recipe.model.train_s3gen, prompts=pool,
                                      uncond_fraction=recipe.training.uncond_fraction, seed=recipe.training.seed)
        if recipe.training.streaming_train:
            train_split = train_split.to_iterable_dataset(num_shards=1).shuffle(seed=recipe.training.seed)
        args = training_arguments(recipe, output_dir, has_eval=eval_split is not None)
        callbacks = [PromptEpochCallback(collator)]
        if s3gen is not None and samples:
            callbacks.append(AudioSamplesCallback(_synthesizer(s3gen, checkpoint.generation), samples,
                                                  sample_rate=S3GEN_SR, score=recipe.training.eval_audio_metrics,
                                                  scorer=scorer, asr_model=recipe.training.eval_asr_model,
                                                  accent_model=recipe.training.eval_accent_model))
        metadata = {"base_model": recipe.model.base_model, "model_variant": checkpoint.layout.name,
                    "model_revision": checkpoint.revision, "support_revision": checkpoint.support_revision,
                    "tokenizer": checkpoint.tokenizer_record(),
                    "language": recipe.data.language, "accent": None if name == "shared" else name,
                    "dataset": recipe.data.input_path, "recipe": recipe_summary(recipe, len(subset["train"])),
                    "left_out_of_training": left_out, **preparation_settings(recipe)}
        trainer = ChatterboxTrainer(model=model, args=args, train_dataset=train_split, eval_dataset=eval_split,
                                    data_collator=collator, callbacks=callbacks,
                                    record_batch_ids=recipe.training.record_batch_ids, adapter_metadata=metadata)
        resume = find_resume_checkpoint(output_dir, recipe.training.resume_from_checkpoint)
        trainer.train(resume_from_checkpoint=resume)
        stopped_early = trainer.state.max_steps and trainer.state.global_step < trainer.state.max_steps
        if stopped_early:
            raise TrainingInterrupted(
                f"Training stopped at step {trainer.state.global_step} of {trainer.state.max_steps} (SIGTERM); "
                f"a complete checkpoint is in {output_dir}. Resume with --resume latest."
            )
        final = Path(output_dir) / FINAL_DIR
        if best and trainer.state.best_model_checkpoint:  # the Trainer loaded it at the end (load_best_model_at_end)
            metadata["chosen_checkpoint"] = {"checkpoint": Path(trainer.state.best_model_checkpoint).name,
                                             "metric": best, "value": trainer.state.best_metric}
            logger.info("%s: the final adapter is %s (%s %.4f)", name, Path(trainer.state.best_model_checkpoint).name,
                        best, trainer.state.best_metric)
        if trainer.args.should_save:
            save_adapters(final, model.t3, model.flow, metadata)
        trainer.accelerator.wait_for_everyone()
        finish_pushes(trainer)  # the last checkpoint's push to the Hub
        speech = [entry["loss_speech"] for entry in trainer.state.log_history if "loss_speech" in entry]
        outputs.append(TrainingResult(name, final, speech[0] if speech else None, speech[-1] if speech else None))
    if recipe.training.push_to_hub and PartialState().is_main_process:
        from ..hub.push import push_model

        # The final adapters (all accents of a per-accent run) with their card, in one commit.
        folder = outputs[0].adapter_dir if recipe.training.adapters == "shared" else recipe.training.output_dir
        url = push_model(folder, recipe.training.hub_model_id, private=recipe.training.hub_private_repo)
        logger.info("pushed the adapters to %s", url)
    return outputs


class TrainingInterrupted(RuntimeError):
    """Training stopped before its end (SIGTERM); its last checkpoint is complete and resumable."""

