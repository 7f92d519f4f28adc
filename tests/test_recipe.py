"""Recipes: YAML sections as defaults, any field overridable on the command line, clear errors."""

import pytest
from conftest import ROOT

from chatterbox_latam.config import RECIPE_SECTIONS, RecipeError, SegmentConfig, parse_recipe

TINY = str(ROOT / "training" / "recipes" / "tiny_cpu.yaml")


def test_recipe_values_and_overrides():
    model, training, data, output, logging = parse_recipe(
        RECIPE_SECTIONS, ["--config", TINY, "--max_audio_length", "12", "--output_dir", "x", "--heldout_speakers", "a",
                          "b", "--max_steps", "20", "--save_every", "5", "--wandb_project", "p"],
        aliases={"output_dir": "prepared_dir"})
    assert model.base_model == "runs/demo/tiny_model" and model.train_s3gen is True
    assert data.input_path == "runs/demo/corpus" and data.max_audio_length == 12.0
    assert data.prepared_dir == "x" and data.heldout_speakers == ["a", "b"]
    assert training.max_steps == 20 and output.save_every == 5 and model.lora_rank == 16
    assert logging.wandb_project == "p" and "wandb" in logging.report_to


def test_every_shipped_recipe_parses():
    for recipe in (ROOT / "training" / "recipes").glob("*.yaml"):
        parse_recipe(RECIPE_SECTIONS, ["--config", str(recipe)])
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


def test_invalid_value_says_what_to_change():
    with pytest.raises(ValueError, match=r"min_audio_length=40.0 and max_audio_length=30.0"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--min_audio_length", "40"])
    with pytest.raises(ValueError, match=r"sampling_rate=16000: the prepared clips must be stored at 24000 Hz"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--sampling_rate", "16000"])
    with pytest.raises(ValueError, match=r"\['speaker_002'\] are in heldout_speakers and validation_speakers"):
        parse_recipe(RECIPE_SECTIONS, ["--config", TINY, "--heldout_speakers", "speaker_002",
                                       "--validation_speakers", "speaker_002"])
