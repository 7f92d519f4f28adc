"""Where a checkpoint's files come from, and what adapters and merged models record of their base: a language
pack's own tokenizer (and VE) wherever it has them, by repo id as from a folder; a pack without a default voice that
loads offline; adapters pinned to the commit their Hub base was resolved at, and warned about another tokenizer.
Tiny checkpoints on the local Hub."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from chatterbox_latam.constants import LAYOUTS
from chatterbox_latam.models.checkpoint import resolve_checkpoint
from chatterbox_latam.testing.tiny_model import build_grapheme_tokenizer_json, build_tiny_checkpoint

PACK = LAYOUTS["es-mx-latam"]
SUPPORT_REPO = PACK.support_repo  # ResembleAI/chatterbox
PACK_REPO = "latam/pack-own-tokenizer"  # a pack in the official layout (its config.json names it), own files too
PINNED_REPO = "latam/pinned-pack"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def linked_copy(folder: Path, dest: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """`folder` as hard links (the weights are hundreds of MB), without the files named in `leave_out`."""
    return Path(shutil.copytree(folder, dest, copy_function=os.link, ignore=lambda _, names: [
        n for n in names if n in leave_out]))


def upload(folder: Path, repo_id: str) -> str:
    """Uploads `folder` to the local Hub and returns the commit."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id).oid


@pytest.fixture(scope="module")
def pack(module_tmp, hub) -> Path:
    """The support repo's tokenizer and VE (the tiny base's, as test_bases.py serves them) on the local Hub, and a
    pack folder holding its own tokenizer (ids of "a" and "o" swapped: it loads the same, tokenises differently) and
    its own VE, also served as PACK_REPO."""
    from chatterbox.models.voice_encoder import VoiceEncoder

    root = module_tmp
    support = root / "support"
    support.mkdir()
    (support / PACK.tokenizer).write_text(build_grapheme_tokenizer_json(), encoding="utf-8")
    torch.manual_seed(0)
    torch.save(VoiceEncoder().state_dict(), support / PACK.ve)
    upload(support, SUPPORT_REPO)

    folder = build_tiny_checkpoint(root / "pack", layout="es-mx-latam", meanflow=False)
    data = json.loads(build_grapheme_tokenizer_json())
    vocab = data["model"]["vocab"]
    vocab["a"], vocab["o"] = vocab["o"], vocab["a"]
    (folder / PACK.tokenizer).write_text(json.dumps(data), encoding="utf-8")
    torch.manual_seed(7)
    torch.save(VoiceEncoder().state_dict(), folder / PACK.ve)
    upload(folder, PACK_REPO)
    return folder


def support_record() -> dict:
    """What a checkpoint records of the support repo's tokenizer (as served by the `pack` fixture)."""
    from huggingface_hub import HfApi

    tokenizer = build_grapheme_tokenizer_json().encode()
    return {"file": PACK.tokenizer, "source": SUPPORT_REPO, "revision": HfApi().repo_info(SUPPORT_REPO).sha,
            "sha256": hashlib.sha256(tokenizer).hexdigest()}


def test_a_pack_uses_its_own_tokenizer_and_ve_by_repo_id_and_from_its_folder(pack, tmp_path):
    from chatterbox_latam.models.loading import load_text_tokenizer

    by_id, by_folder = resolve_checkpoint(PACK_REPO), resolve_checkpoint(pack)
    bare = resolve_checkpoint(linked_copy(pack, tmp_path / "bare", leave_out=(PACK.tokenizer, PACK.ve)))
    assert by_id.layout.name == by_folder.layout.name == bare.layout.name == "es-mx-latam"
    own = sha256(pack / PACK.tokenizer)
    for checkpoint in (by_id, by_folder):
        assert sha256(checkpoint.paths["tokenizer"]) == own
        assert sha256(checkpoint.paths["ve"]) == sha256(pack / PACK.ve)
    tokens = [load_text_tokenizer(c).text_to_tokens("hola", language_id="es").tolist()
              for c in (by_id, by_folder, bare)]
    assert tokens[0] == tokens[1] != tokens[2]  # the pack's own tokenizer both ways, not the support repo's
    # what adapters and merged models record: the file, where it came from (repo id at its commit, or the folder),
    # and its SHA-256; a pack without its own tokenizer names the support repo's
    assert len(by_id.revision) == 40 and by_folder.revision is None
    assert by_id.tokenizer_record() == {"file": PACK.tokenizer, "source": PACK_REPO, "revision": by_id.revision,
                                        "sha256": own}
    assert by_folder.tokenizer_record() == {"file": PACK.tokenizer, "source": str(pack.resolve()), "revision": None,
                                            "sha256": own}
    assert bare.tokenizer_record() == support_record() and support_record()["sha256"] != own


def test_a_pack_without_a_default_voice_loads_offline(pack, tmp_path, monkeypatch, caplog):
    """A pack folder with its T3, S3Gen, VE and tokenizer but no conds.pt, offline with nothing cached: it loads,
    says once that it has no default voice, speaks with a reference, and asks for one without."""
    import huggingface_hub.constants

    from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS
    from chatterbox_latam.utils import write_wav

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    folder = linked_copy(pack, tmp_path / "pack")
    assert not (folder / PACK.conds).exists()
    t = np.arange(3 * 16_000) / 16_000  # any sound is a reference for a random model: a harmonic, syllable-like tone
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    reference = write_wav(tmp_path / "reference.wav", (0.2 * tone).astype(np.float32), 16_000)
    with caplog.at_level(logging.WARNING, logger="chatterbox_latam"):
        model = ChatterboxLatamTTS.from_pretrained(folder)
        wav = model.generate("Hola.", audio_prompt_path=reference, seed=0, max_new_tokens=20)
        with pytest.raises(ValueError, match="no default voice"):
            model.generate("Hola.", max_new_tokens=20)
        assert "conds" not in resolve_checkpoint(folder).paths  # resolved again: not said again
    assert torch.isfinite(wav).all() and wav.abs().max() > 1e-3
    said = [r.getMessage() for r in caplog.records if "has no default voice" in r.getMessage()]
    assert len(said) == 1 and SUPPORT_REPO in said[0]
    # without its tokenizer the pack still needs the support repo, and the error says so
    (folder / PACK.tokenizer).unlink()
    with pytest.raises(FileNotFoundError, match=rf"\['{PACK.tokenizer}'\] come from {SUPPORT_REPO}"):
        resolve_checkpoint(folder)


def test_an_adapter_loads_and_merges_onto_the_base_commit_and_tokenizer_it_records(pack, tmp_path, caplog):
    """adapter.json names a Hub base, the commit it was trained at, and the tokenizer it was trained with (here the
    support repo's, as a pack named by repo id used to get); the base repo then gets a new T3. Loading and merging
    use the recorded commit's weights and warn, naming both tokenizers; the merged config.json records the base's
    revision and tokenizer; a merged model whose tokenizer is not the recorded one is warned about too."""
    from huggingface_hub import HfApi
    from safetensors.torch import load_file, save_file

    from chatterbox_latam.models.config import ModelConfig
    from chatterbox_latam.models.loading import build_t3, load_chatterbox
    from chatterbox_latam.models.lora import add_t3_lora, save_adapters
    from chatterbox_latam.models.merge import merge_adapter
    from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS

    first = upload(pack, PINNED_REPO)
    pinned = resolve_checkpoint(PINNED_REPO)
    assert pinned.revision == first  # "main" is recorded as the commit it resolved to
    old = load_file(str(pack / PACK.t3))["text_emb.weight"]
    torch.manual_seed(0)  # a fresh LoRA (B = 0): nothing trained, the adapter model is the base's
    t3 = add_t3_lora(build_t3(json.loads((pack / "config.json").read_text())), ModelConfig(lora_rank=4, lora_alpha=8))
    adapter = save_adapters(tmp_path / "adapter", t3, None, {
        "base_model": PINNED_REPO, "model_variant": PACK.name, "model_revision": first, "tokenizer": support_record()})
    changed = load_file(str(pack / PACK.t3))
    changed["text_emb.weight"] = changed["text_emb.weight"] + 1
    save_file(changed, str(tmp_path / PACK.t3))
    HfApi().upload_file(path_or_fileobj=str(tmp_path / PACK.t3), path_in_repo=PACK.t3, repo_id=PINNED_REPO)

    def warnings():
        found = [r.getMessage() for r in caplog.records if "text tokenizer" in r.getMessage()]
        caplog.clear()
        return found

    def text_emb(model):
        return model.tts.t3.get_base_model().text_emb.weight

    with caplog.at_level(logging.WARNING, logger="chatterbox_latam"):
        assert torch.equal(text_emb(ChatterboxLatamTTS.from_pretrained(adapter)), old)
        [at_load] = warnings()
        merged = merge_adapter(adapter, tmp_path / "merged")
        [at_merge] = warnings()
        assert torch.equal(load_file(str(merged.output_dir / LAYOUTS["merged-v3"].t3))["text_emb.weight"], old)
        for said in (at_load, at_merge):
            assert f"{PACK.tokenizer} of {SUPPORT_REPO}@{support_record()['revision'][:12]}" in said
            assert f"{PACK.tokenizer} of {PINNED_REPO}@{first[:12]}" in said
        config = json.loads((merged.output_dir / "config.json").read_text())
        assert config["model_revision"] == first
        assert config["tokenizer"] == {"file": PACK.tokenizer, "source": PINNED_REPO, "revision": first,
                                       "sha256": sha256(pack / PACK.tokenizer)}
        assert sha256(merged.output_dir / PACK.tokenizer) == config["tokenizer"]["sha256"]
        (merged.output_dir / PACK.tokenizer).write_text(build_grapheme_tokenizer_json(), encoding="utf-8")
        load_chatterbox(merged.output_dir)
        [at_merged] = warnings()
        assert f"The merged model {merged.output_dir}" in at_merged and f"of {PINNED_REPO}@{first[:12]}" in at_merged


def test_training_records_the_bases_tokenizer_and_revision(trained_adapter, tiny_checkpoint):
    from chatterbox_latam.models.lora import read_adapter_metadata

    metadata = read_adapter_metadata(trained_adapter)
    assert metadata["max_prompt_seconds"] == 6.0  # the prompts' length, which inference mirrors below 6 s
    assert "model_revision" in metadata and metadata["model_revision"] is None  # a local folder has none
    assert metadata["tokenizer"] == {"file": PACK.tokenizer, "source": str(Path(tiny_checkpoint).resolve()),
                                     "revision": None, "sha256": sha256(Path(tiny_checkpoint) / PACK.tokenizer)}


def test_a_packs_support_files_are_pinned_to_the_commit_recorded(pack, tmp_path):
    """A pack that takes its VE from the support repo records that repo's commit (`support_revision`, which training
    writes into adapter.json); resolved at it, the pack keeps that VE after the support repo moves on."""
    from huggingface_hub import HfApi

    from chatterbox_latam.models.lora import adapter_base

    upload(linked_copy(pack, tmp_path / "no-ve", leave_out=(PACK.ve,)), "latam/pack-without-ve")
    first = resolve_checkpoint("latam/pack-without-ve")
    commit, ve = first.support_revision, sha256(first.paths["ve"])
    assert commit == HfApi().repo_info(SUPPORT_REPO).sha and first.origin("ve") == (SUPPORT_REPO, commit)
    original = tmp_path / "original-ve.pt"
    shutil.copy(first.paths["ve"], original)
    torch.save({k: v + 1 for k, v in torch.load(original).items()}, tmp_path / PACK.ve)
    HfApi().upload_file(path_or_fileobj=str(tmp_path / PACK.ve), path_in_repo=PACK.ve, repo_id=SUPPORT_REPO)
    try:
        assert sha256(resolve_checkpoint("latam/pack-without-ve").paths["ve"]) != ve  # the newest, unpinned
        base, variant, revision, support = adapter_base({"base_model": "latam/pack-without-ve",
                                                         "model_variant": PACK.name, "support_revision": commit})
        pinned = resolve_checkpoint(base, variant=variant, revision=revision, support_revision=support)
        assert sha256(pinned.paths["ve"]) == ve and pinned.support_revision == commit
    finally:  # the support repo serves other tests: its VE as it was
        HfApi().upload_file(path_or_fileobj=str(original), path_in_repo=PACK.ve, repo_id=SUPPORT_REPO)
