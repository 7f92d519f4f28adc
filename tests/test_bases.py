"""Resemble's v3 T3 and its Single Language Packs as bases: tiny checkpoints in each published layout (the v3 file
beside v2 in `ResembleAI/chatterbox`; a pack's own T3 and an `s3gen_v3.pt` without the two computed buffers, its VE
and tokenizer from the base repo) load, speak with v3 decoding, train, merge and load back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import ROOT

from chatterbox_latam.compat import computed_s3gen_buffers
from chatterbox_latam.constants import LAYOUTS
from chatterbox_latam.models.checkpoint import resolve_checkpoint
from chatterbox_latam.models.loading import load_s3gen
from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS
from chatterbox_latam.testing.tiny_model import build_tiny_checkpoint

PACK_REPO = "ResembleAI/Chatterbox-Multilingual-es-mx-latam"


@pytest.fixture(scope="module")
def bases(module_tmp, hub) -> dict[str, Path]:
    """`ResembleAI/chatterbox` (v2 and v3 T3) and the es-mx-latam pack on the local Hub, the es-es pack in a folder."""
    from huggingface_hub import HfApi

    root = module_tmp
    folders = {name: build_tiny_checkpoint(root / name, layout=name)
               for name in ("multilingual-v3", "es-mx-latam", "es-es")}
    api = HfApi()
    for repo, name in (("ResembleAI/chatterbox", "multilingual-v3"), (PACK_REPO, "es-mx-latam")):
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folders[name]), repo_id=repo)
    return folders


@pytest.mark.slow
def test_pack_s3gen_loads_without_exactly_its_two_computed_buffers(bases):
    from chatterbox.models.s3gen import S3Gen

    from chatterbox_latam.models.loading import build_s3gen

    checkpoint = resolve_checkpoint(bases["es-es"])
    assert checkpoint.layout.name == "es-es" and checkpoint.paths["s3gen"].name == "s3gen_v3.pt"
    state = torch.load(checkpoint.paths["s3gen"], weights_only=True)
    assert computed_s3gen_buffers() == {"tokenizer._mel_filters", "tokenizer.window"}
    assert computed_s3gen_buffers().isdisjoint(state)
    with pytest.raises(RuntimeError, match="Missing key"):  # what upstream's strict load says
        build_s3gen(checkpoint.config).load_state_dict(state)
    s3gen = load_s3gen(checkpoint)
    assert isinstance(s3gen, S3Gen) and s3gen.tokenizer.window.numel() > 0  # the computed ones, as upstream makes them
    damaged = dict(state)
    damaged.pop(next(k for k in state if k.startswith("flow.")))
    torch.save(damaged, checkpoint.paths["s3gen"])
    try:
        with pytest.raises(RuntimeError, match=r"missing \['flow\."):
            load_s3gen(checkpoint)  # strict about every other key
    finally:
        torch.save(state, checkpoint.paths["s3gen"])


@pytest.mark.slow
def test_v3_and_pack_layouts_resolve_with_upstreams_names(bases, tmp_path):
    v2 = resolve_checkpoint("ResembleAI/chatterbox")
    v3 = resolve_checkpoint("ResembleAI/chatterbox", t3_model="v3")
    assert (v2.layout.name, v2.generation.name, v2.paths["t3"].name) == ("multilingual", "v2",
                                                                         "t3_mtl23ls_v2.safetensors")
    assert (v3.layout.name, v3.generation.name, v3.paths["t3"].name) == ("multilingual-v3", "v3",
                                                                         "t3_mtl23ls_v3.safetensors")
    pack = resolve_checkpoint(PACK_REPO)
    assert pack.layout.name == "es-mx-latam" and pack.generation.name == "v3"
    assert pack.paths["t3"].name == "t3_es_mx_latam.safetensors" and pack.paths["s3gen"].name == "s3gen_v3.pt"
    # VE and tokenizer come from the base repo, as the packs are used
    assert pack.paths["ve"].parent == v2.paths["ve"].parent != pack.paths["t3"].parent
    for name in ("es-es", "es-mx-latam"):  # a local pack folder gets them from the base repo too
        local = resolve_checkpoint(bases[name])
        assert local.layout.name == name and local.paths["tokenizer"].parent != bases[name]
    with pytest.raises(ValueError, match="t3_model='v4'"):
        resolve_checkpoint("ResembleAI/chatterbox", t3_model="v4")
    with pytest.raises(ValueError, match="disagree"):
        resolve_checkpoint(bases["es-es"], variant="multilingual", t3_model="v3")


@pytest.mark.pipeline
@pytest.mark.parametrize("base", ["v3", "es-mx-latam", "es-es"])  # es-es from its folder, the others by repo id
def test_base_trains_merges_and_speaks_with_v3_decoding(base, bases, corpus, tmp_path):
    """Each base (by repo id, or es-es from a folder holding only the pack's files): prepared with its own encoders,
    five LoRA steps, a merge into the v3 merged layout, loaded back and speaking with v3 decoding."""
    from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe
    from chatterbox_latam.parser import parse_recipe
    from chatterbox_latam.data.prepare import prepare_dataset
    from chatterbox_latam.models.merge import merge_adapter
    from chatterbox_latam.training.run import run_finetune

    source, extra = {"v3": ("ResembleAI/chatterbox", ["--t3_model", "v3"]), "es-mx-latam": (PACK_REPO, []),
                     "es-es": (str(bases["es-es"]), [])}[base]
    model = ChatterboxLatamTTS.from_pretrained(source, t3_model="v3" if base == "v3" else None)
    assert model.generation.name == "v3" and not model.runs_alignment()
    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    spoken = model.generate("Hola.", reference, seed=0, max_new_tokens=20)
    assert torch.isfinite(spoken).all() and spoken.abs().max() > 1e-3

    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, [
        "--config", str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"), "--base_model", source, *extra,
        "--input_path", str(corpus), "--prepared_dir", str(tmp_path / "data"), "--max_rows", "16",
        "--train_s3gen", "false", "--validation_size", "0", "--test_size", "0", "--checkpoint_dir",
        str(tmp_path / "run"), "--max_steps", "5", "--save_every", "5", "--eval_audio_samples", "0",
        "--report_to", "none"]))
    prepare_dataset(recipe.model, recipe.data, progress=False)
    [trained] = run_finetune(recipe)
    adapter = ChatterboxLatamTTS.from_pretrained(trained.adapter_dir)
    assert adapter.generation.name == "v3"  # the adapter names its base and layout
    merged = merge_adapter(trained.adapter_dir, tmp_path / "merged")
    assert (merged.output_dir / LAYOUTS["merged-v3"].t3).exists()
    loaded = ChatterboxLatamTTS.from_pretrained(merged.output_dir)
    assert loaded.generation.name == "v3" and max(merged.check.values()) < 1e-4
    wav = loaded.generate("Hola.", reference, seed=0, max_new_tokens=20)
    # the merged model speaks as the adapter does (same seed, same tokens, the same audio)
    assert torch.allclose(wav, adapter.generate("Hola.", reference, seed=0, max_new_tokens=20), atol=1e-3)
    # published as a merged model, its card says how it decodes
    from chatterbox_latam.hub.cards import model_files, render_model_card

    assert model_files(merged.output_dir)[0] == "merged"
    assert "decodes a v3 T3" in str(render_model_card(merged.output_dir, "latam/merged-v3"))
