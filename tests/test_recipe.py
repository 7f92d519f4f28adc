"""Recipes: YAML sections as defaults, any field overridable on the command line, the Trainer's own fields under their
own names, the names recipes have always used as aliases, and clear errors before any model loads."""

import json

import pytest
from conftest import ROOT
from transformers import TrainingArguments

from chatterbox_latam.data.config import SegmentConfig
from chatterbox_latam.parser import RecipeError, parse_recipe
from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe, TrainingConfig

TINY = str(ROOT / "training" / "recipes" / "tiny_cpu.yaml")

# The recipe of the project's founding README (README.es.md's "Configurar el entrenamiento"), as users copy it.
FOUNDING_RECIPE = """\
model:
  base_model: "resemble-ai/chatterbox"
  lora_rank: 32
  lora_alpha: 64
  lora_dropout: 0.05
  target_modules:
    - "q_proj"
    - "v_proj"
    - "k_proj"
    - "o_proj"

training:
  batch_size: 4
  gradient_accumulation_steps: 4
  learning_rate: 1e-4
  num_epochs: 10
  warmup_steps: 500
  max_audio_length: 30  # segundos

data:
  train_path: "data/train"
  val_path: "data/val"

output:
  checkpoint_dir: "checkpoints/"
  save_every: 1000

logging:
  wandb_project: "chatterbox-es-latam"
  log_every: 100
"""


def test_recipe_values_and_overrides():
    model, data, training = parse_recipe(
        RECIPE_SECTIONS, ["--config", TINY, "--max_audio_length", "12", "--prepared_dir", "x", "--heldout_speakers",
                          "a", "b", "--max_steps", "20", "--save_every", "5", "--wandb_project", "p"])
    assert model.base_model == "runs/demo/tiny_model" and model.train_s3gen is True
    assert data.input_path == "runs/demo/corpus" and data.max_audio_length == 12.0
    assert data.prepared_dir == "x" and data.heldout_speakers == ["a", "b"]
    assert training.max_steps == 20 and training.save_steps == 5 and model.lora_rank == 16
    assert training.eval_steps == 5  # evaluations follow the saves unless eval_steps says otherwise
    assert training.wandb_project == "p" and "wandb" in training.report_to
    assert training.output_dir == "runs/demo/checkpoints" and training.per_device_train_batch_size == 4


def test_the_training_config_is_the_trainers_own_and_reaches_every_field():
    """Fields no recipe could reach before (optim, lr_scheduler_kwargs, tf32, torch_compile, checkpointing kwargs)
    are set under their own names, from the command line and from a recipe, and land in TrainingArguments."""
    model, data, training = parse_recipe(RECIPE_SECTIONS, [
        "--config", TINY, "--optim", "adafactor", "--lr_scheduler_type", "cosine_with_restarts",
        "--lr_scheduler_kwargs", '{"num_cycles": 2}', "--gradient_checkpointing", "true",
        "--gradient_checkpointing_kwargs", '{"use_reentrant": false}', "--torch_compile", "false",
        "--weight_decay", "0.01", "--adam_beta2", "0.98"])
    assert isinstance(training, TrainingArguments) and isinstance(training, TrainingConfig)
    assert training.optim == "adafactor" and training.lr_scheduler_kwargs == {"num_cycles": 2}
    assert training.activation_checkpointing is True  # transformers' own name for gradient_checkpointing
    assert training.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert training.weight_decay == 0.01 and training.adam_beta2 == 0.98
    assert training.text_loss_weight == 0.01 and training.length_column_name == "duration"
    assert json.loads(training.to_json_string())["optim"] == "adafactor"  # the Trainer serialises it as its own


def test_trainer_fields_in_a_recipe_under_their_own_names(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("training:\n  optim: adamw_torch_fused\n  per_device_train_batch_size: 8\n  num_train_epochs: 2\n"
                    "  tf32: false\noutput:\n  output_dir: out\n  save_steps: 50\nlogging:\n  logging_steps: 5\n"
                    "  report_to: none\n")
    _, _, training = parse_recipe(RECIPE_SECTIONS, ["--config", str(path)])
    assert training.optim == "adamw_torch_fused" and training.per_device_train_batch_size == 8
    assert training.num_train_epochs == 2.0 and training.tf32 is False and training.output_dir == "out"
    assert training.save_steps == 50 and training.logging_steps == 5 and training.report_to == []
    assert training.per_device_eval_batch_size == 8  # follows the training batch unless set


def test_the_founding_readmes_recipe_parses_with_its_own_names(tmp_path):
    path = tmp_path / "train_config.yaml"
    path.write_text(FOUNDING_RECIPE, encoding="utf-8")
    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, ["--config", str(path), "--report_to", "none"]))
    assert recipe.model.base_model == "resemble-ai/chatterbox" and recipe.model.lora_rank == 32
    assert recipe.data.input_path == "data/train" and recipe.data.validation_path == "data/val"
    assert recipe.data.max_audio_length == 30.0  # set in `training:`, where that README puts it
    t = recipe.training
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.learning_rate) == (4, 4, 1e-4)
    assert (t.num_train_epochs, t.warmup_steps, t.output_dir, t.save_steps) == (10.0, 500, "checkpoints/", 1000)
    assert t.logging_steps == 100 and t.wandb_project == "chatterbox-es-latam" and "wandb" in t.report_to


def test_every_shipped_recipe_parses():
    recipes = sorted((ROOT / "training" / "recipes").glob("*.yaml"))
    assert len(recipes) >= 3
    for recipe in recipes:
        Recipe(*parse_recipe(RECIPE_SECTIONS, ["--config", str(recipe)]))
        parse_recipe({"segmentation": SegmentConfig}, ["--config", str(recipe)])


def test_each_script_reads_its_own_sections_and_an_unknown_one_is_named(tmp_path):
    (segmentation,) = parse_recipe({"segmentation": SegmentConfig}, ["--config", TINY])
    assert segmentation.script.endswith("script.txt") and segmentation.min_dnsmos == 2.5
    path = tmp_path / "bad.yaml"
    path.write_text("segmentaton:\n  min_seconds: 2\n")
    with pytest.raises(RecipeError, match=r"unknown section 'segmentaton'.*'segmentation'"):
        parse_recipe(RECIPE_SECTIONS, ["--config", str(path)])


def test_unknown_key_names_the_known_ones(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  max_audio_lenght: 20\n")
    with pytest.raises(RecipeError, match=r"section 'data' has no field 'max_audio_lenght'.*max_audio_length"):
        parse_recipe(RECIPE_SECTIONS, ["--config", str(path)])
    path.write_text("training:\n  batch_size: 4\n  per_device_train_batch_size: 8\n")
    with pytest.raises(RecipeError, match=r"'per_device_train_batch_size' is set twice \(4 and 8"):
        parse_recipe(RECIPE_SECTIONS, ["--config", str(path)])


def test_invalid_value_says_what_to_change():
    with pytest.raises(ValueError, match=r"min_audio_length=40.0 and max_audio_length=30.0"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--min_audio_length", "40"])
    with pytest.raises(ValueError, match=r"sampling_rate=16000: the prepared clips must be stored at 24000 Hz"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--sampling_rate", "16000"])
    with pytest.raises(ValueError, match=r"\['speaker_002'\] are in heldout_speakers and validation_speakers"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--heldout_speakers", "speaker_002",
                                       "--validation_speakers", "speaker_002"])


def test_checks_that_span_sections_fail_when_the_recipe_is_parsed():
    """Before any model loads: what a run could only have found out after loading T3 and S3Gen."""
    with pytest.raises(ValueError, match=r"metric_for_best_model=eval_wer needs a model to score it: set "
                                         r"eval_asr_model"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--metric_for_best_model", "wer"])
    with pytest.raises(ValueError, match=r"scores synthesised samples: set eval_audio_samples > 0"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--metric_for_best_model", "speaker_sim",
                                       "--eval_audio_samples", "0"])
    with pytest.raises(ValueError, match=r"needs train_t3 true"):
        Recipe(*parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--metric_for_best_model", "dnsmos",
                                               "--train_t3", "false"]))
    with pytest.raises(ValueError, match=r"needs evaluations: prepare a validation split"):
        Recipe(*parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--metric_for_best_model", "loss",
                                               "--validation_size", "0"]))
    with pytest.raises(ValueError, match=r"streaming_train needs max_steps"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--streaming_train", "true", "--max_steps", "-1"])
    with pytest.raises(ValueError, match=r"push_to_hub is set but hub_model_id is not"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--push_to_hub", "true"])


def test_a_folder_recipe_says_folder_and_the_older_name_is_accepted(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  input_path: corpus\n  format: seed\n")
    _, data, _ = parse_recipe(RECIPE_SECTIONS, ["--config", str(path)])
    assert data.format == "folder"
