"""One loader for a local checkpoint folder and a Hub repo id (through the local Hub), with clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from chatterbox_latam.models.checkpoint import (
    CheckpointNotFoundError,
    resolve_checkpoint,
)
from chatterbox_latam.models.loading import (
    load_chatterbox,
    load_t3,
    load_text_tokenizer,
)


def test_tiny_checkpoint_has_the_upstream_file_layout(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"ve.pt", "t3_mtl23ls_v2.safetensors", "s3gen.pt", "grapheme_mtl_merged_expanded_v1.json"} <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["t3"]["llama"]["num_hidden_layers"] == 2


def test_tiny_checkpoint_loads_into_the_upstream_classes(tiny_checkpoint):
    from chatterbox.models.t3 import T3
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    tts = load_chatterbox(tiny_checkpoint)
    assert isinstance(tts, ChatterboxMultilingualTTS) and isinstance(tts.t3, T3)
    assert len(tts.t3.tfmr.layers) == 2 and tts.t3.hp.text_tokens_dict_size == 2454
    # the tokenizer speaks Spanish with the [es] tag and T3's start/stop ids
    tokens = tts.tokenizer.text_to_tokens("¿Qué tal, señor Núñez?", language_id="es")[0].tolist()
    unk = tts.tokenizer.tokenizer.token_to_id("[UNK]")
    assert unk not in tokens and tts.tokenizer.decode(tokens).startswith("[es]")
    assert tts.tokenizer.tokenizer.token_to_id("[START]") == tts.t3.hp.start_text_token
    assert tts.tokenizer.tokenizer.token_to_id("[STOP]") == tts.t3.hp.stop_text_token


def test_tiny_checkpoint_is_seeded(tiny_checkpoint, tmp_path):
    from chatterbox_latam.testing.tiny_model import build_tiny_checkpoint

    again = build_tiny_checkpoint(tmp_path / "again", seed=0)
    first, second = load_t3(resolve_checkpoint(tiny_checkpoint)), load_t3(resolve_checkpoint(again))
    for (name, a), (other, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert name == other and torch.equal(a, b), name


def test_same_loader_serves_a_hub_repo_id(tiny_checkpoint, hub):
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo("latam/tiny-chatterbox")
    api.upload_folder(folder_path=str(tiny_checkpoint), repo_id="latam/tiny-chatterbox")
    checkpoint = resolve_checkpoint("latam/tiny-chatterbox")
    assert checkpoint.directory != tiny_checkpoint and checkpoint.config["t3"]["llama"]["num_hidden_layers"] == 2
    remote, local = load_t3(checkpoint), load_t3(resolve_checkpoint(tiny_checkpoint))
    assert torch.equal(remote.speech_head.weight, local.speech_head.weight)
    assert load_text_tokenizer(checkpoint).encode("hola", language_id="es")


def test_missing_repo_says_how_to_use_a_local_copy(hub):
    with pytest.raises(CheckpointNotFoundError, match=r"latam/does-not-exist.*hf download latam/does-not-exist"):
        resolve_checkpoint("latam/does-not-exist")


def test_folder_without_weights_lists_what_it_found(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointNotFoundError, match=r"t3_mtl23ls_v2.safetensors.*model.bin"):
        resolve_checkpoint(tmp_path)
