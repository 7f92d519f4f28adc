"""Inference reads what training taught, and decodes each base as upstream does: the token budget comes from the
spelled-out text, references are cleaned like training clips, the alignment heuristics can be switched per call
and follow the base (v2 on; v3 and the packs off), v3 decoding is upstream main's, the precision guard judges a
real Spanish sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from chatterbox_latam.constants import GENERATIONS, SAMPLES_PER_TOKEN
from chatterbox_latam.data.text import text_for_model
from chatterbox_latam.models.loading import build_t3, load_chatterbox
from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS, default_max_new_tokens

MONEY = "Son $2.345.678,90 MXN."


def _reference(corpus) -> Path:
    return sorted((corpus / "audio").rglob("*.wav"))[0]


def test_token_budget_comes_from_the_text_the_model_reads(tiny_checkpoint, corpus):
    """22 characters as written, ~100 spelled out: the untrained tiny model (it never stops by itself) runs to a
    budget long enough for the spelled-out sentence, not one cut from the raw text."""
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    spoken = text_for_model(MONEY)
    assert "MXN" not in spoken and "$" not in spoken and len(spoken) > 4 * len(MONEY)
    assert model.token_budget(MONEY) == default_max_new_tokens(spoken) > 2 * default_max_new_tokens(MONEY)
    wav = model.generate(MONEY, _reference(corpus), seed=0)
    # an untrained T3 draws some special tokens S3Gen drops; the rest is far past the raw text's budget
    assert wav.shape[1] > 1.5 * default_max_new_tokens(MONEY) * SAMPLES_PER_TOKEN
    # a cap (evaluation's --max_new_tokens) shortens a long budget and never lengthens a short one
    model.token_cap = 120
    assert model.token_budget(MONEY) == 120
    assert model.token_budget("Sí.") == default_max_new_tokens(text_for_model("Sí.")) < 120


def test_reference_is_cleaned_as_training_clips_were(tiny_checkpoint, corpus, tmp_path):
    """A reference with a second of silence in front and 20 dB too quiet gives the voice its cleaned clip gives
    (trimmed, loudness-normalised as in preparation), through upstream's own prepare_conditionals."""
    from chatterbox_latam.data.audio import CleaningConfig, clean_audio, decode_audio

    samples, rate = sf.read(_reference(corpus), dtype="float32")
    raw = tmp_path / "raw.wav"
    sf.write(raw, np.concatenate([np.zeros(rate, dtype=np.float32), 0.1 * samples]), rate, subtype="FLOAT")
    cleaning = {"trim_silence": True, "trim_top_db": 40.0, "target_loudness": -23.0}
    model = ChatterboxLatamTTS(load_chatterbox(tiny_checkpoint), reference_cleaning=cleaning)
    cleaned = tmp_path / "cleaned.wav"
    sf.write(cleaned, clean_audio(*decode_audio(raw), CleaningConfig(**cleaning)), 24_000, subtype="FLOAT")
    tts = load_chatterbox(tiny_checkpoint)
    tts.prepare_conditionals(str(cleaned))
    voice = model.voice(raw)
    assert torch.allclose(voice.gen["prompt_feat"], tts.conds.gen["prompt_feat"], atol=1e-4)
    assert torch.equal(voice.t3.cond_prompt_speech_tokens, tts.conds.t3.cond_prompt_speech_tokens)
    assert torch.allclose(voice.t3.speaker_emb, tts.conds.t3.speaker_emb, atol=1e-5)
    tts.prepare_conditionals(str(raw))  # as upstream takes it: another voice
    assert voice.gen["prompt_feat"].shape != tts.conds.gen["prompt_feat"].shape
    with pytest.raises(ValueError, match="no usable speech"):
        silent = tmp_path / "silent.wav"
        sf.write(silent, np.zeros(rate, dtype=np.float32), rate)
        model.voice(silent)


def test_normalize_text_false_is_honoured_at_inference(tiny_checkpoint):
    model = ChatterboxLatamTTS(load_chatterbox(tiny_checkpoint), normalize_text=False)
    assert model.model_text("Son 5 pesos") == "Son 5 pesos."
    assert ChatterboxLatamTTS(load_chatterbox(tiny_checkpoint)).model_text("Son 5 pesos") == "Son cinco pesos."


# Enough layers for upstream's alignment heuristics (they watch heads of layers 9, 12 and 13), small MLPs.
ALIGNED = {"num_hidden_layers": 14, "intermediate_size": 256}


@pytest.fixture(scope="module")
def aligned_checkpoint(tiny_checkpoint, module_tmp) -> Path:
    """The tiny checkpoint with a 14-layer multilingual T3, as `ResembleAI/chatterbox` with v2 and v3 files."""
    from safetensors.torch import save_file

    folder = module_tmp / "base"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["t3"] = {"llama": ALIGNED}
    config.pop("layout")
    (folder / "config.json").write_text(json.dumps(config))
    for seed, name in ((0, "t3_mtl23ls_v2.safetensors"), (1, "t3_mtl23ls_v3.safetensors")):
        torch.manual_seed(seed)
        save_file({k: v.contiguous() for k, v in build_t3(config).state_dict().items()}, str(folder / name))
    return folder


def _likely_stop(model: ChatterboxLatamTTS):
    with torch.no_grad():
        model.tts.t3.speech_head.weight[model.tts.t3.hp.stop_speech_token] *= 8


def test_alignment_heuristics_follow_the_base_and_can_be_switched_per_call(aligned_checkpoint, corpus):
    v2 = ChatterboxLatamTTS.from_pretrained(aligned_checkpoint)
    v3 = ChatterboxLatamTTS.from_pretrained(aligned_checkpoint, t3_model="v3")
    assert v2.generation.name == "v2" and v3.generation.name == "v3"
    assert not torch.equal(v2.tts.t3.speech_head.weight, v3.tts.t3.speech_head.weight)  # the v3 file was loaded
    assert v2.runs_alignment() and not v2.runs_alignment(False)
    assert not v3.runs_alignment() and v3.runs_alignment(True)
    # with a likely stop token the heuristics hold it back until the text is read: the switch reaches decoding
    _likely_stop(v2)
    reference = _reference(corpus)
    with_heuristics = v2.generate("Hola, buenos días.", reference, seed=0, max_new_tokens=60)
    without = v2.generate("Hola, buenos días.", reference, seed=0, max_new_tokens=60, alignment=False)
    assert with_heuristics.shape[1] > without.shape[1]
    v2.alignment = False  # the model-wide setting (generate.py --alignment, the Space's ALIGNMENT)
    assert v2.generate("Hola, buenos días.", reference, seed=0, max_new_tokens=60).shape == without.shape


def test_v3_decodes_as_upstream_main(aligned_checkpoint, corpus):
    """v3 by default: repetition penalty 1.2 and no alignment heuristics, token for token upstream's loop as upstream
    main runs it (0.1.7's `T3.inference` with its analyzer off, which is all main changed in the loop)."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    from chatterbox_latam.testing.check_real import upstream_main_inference

    model = ChatterboxLatamTTS.from_pretrained(aligned_checkpoint, t3_model="v3")
    reference, text = _reference(corpus), "Hola, ¿cómo estás?"
    voice = model.voice(reference).t3
    ids = model.tts.tokenizer.text_to_tokens(model.model_text(text), language_id="es")
    ids = torch.nn.functional.pad(torch.nn.functional.pad(ids, (1, 0), value=model.tts.t3.hp.start_text_token),
                                  (0, 1), value=model.tts.t3.hp.stop_text_token)
    for seed in range(2):
        ours = model.tokens(text, reference, seed=seed, max_new_tokens=40)
        torch.manual_seed(seed)
        cond = T3Cond(speaker_emb=voice.speaker_emb, cond_prompt_speech_tokens=voice.cond_prompt_speech_tokens,
                      emotion_adv=voice.emotion_adv)  # upstream caches the prompt embedding on the object it gets
        upstream = upstream_main_inference(model.tts.t3, cond, ids, 40, repetition_penalty=1.2)
        assert torch.equal(ours, upstream), seed


def test_v3_drops_the_last_tokens_audio_whole_and_streamed(tiny_checkpoint, corpus):
    reference = _reference(corpus)
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    fixed = {"seed": 0, "max_new_tokens": 30, "repetition_penalty": 2.0, "alignment": False}
    v2 = model.generate("Hola.", reference, **fixed)
    model.generation = GENERATIONS["v3"]
    v3 = model.generate("Hola.", reference, **fixed)
    assert v3.shape[1] == v2.shape[1] - SAMPLES_PER_TOKEN
    streamed = list(model.stream("Hola.", reference, chunk_tokens=12, **fixed))
    assert len(streamed) > 1 and sum(map(len, streamed)) == v3.shape[1]


def test_auto_precision_guard_decodes_a_spanish_sentence_as_synthesis_does(tiny_checkpoint):
    """The guard reads the Spanish sentence as synthesis reads it: its recorded text ids decode, with the
    tokenizer, to the sentence spelled out (title, date, time and amount in words, no digit or symbol left), in a
    real voice (the tiny model has no default voice: the Spanish reference shipped for it), with the generation's
    repetition penalty (v3: 1.2), over 64 speech tokens. And its choice is the one the test computes: each mode's
    teacher-forced agreement with fp32 on those tokens, recomputed here from upstream's embeddings (conditioning,
    text, the start token twice as upstream's decoding feeds it, then the tokens) and a full forward pass, is the
    one reported, and the mode chosen is the fastest whose agreement reaches the threshold."""
    import unicodedata

    from chatterbox.models.t3.modules.cond_enc import T3Cond

    from chatterbox_latam.constants import SPEECH_VOCAB_SIZE
    from chatterbox_latam.synthesis.precision import AUTO_MIN_AGREEMENT, t3_for_mode
    from chatterbox_latam.synthesis.tts import GUARD_STEPS, GUARD_VOICE

    tts = load_chatterbox(tiny_checkpoint)
    assert tts.conds is None
    model = ChatterboxLatamTTS(tts, mode="auto", generation="v3")
    guard, t3 = model.mode_guard, tts.t3
    hp = t3.hp
    ids = guard["text_tokens"]
    assert ids[0] == hp.start_text_token and ids[-1] == hp.stop_text_token
    read = unicodedata.normalize("NFC", tts.tokenizer.decode(ids[1:-1]))  # the tokenizer reads NFKD
    assert read == "[es]buenos días, le habla la doctora rojas, su cita quedó para el quince de marzo a las diez y " \
                   "treinta, y el saldo pendiente es de mil doscientos cincuenta pesos con cincuenta centavos. " \
                   "¿le parece bien?"
    assert guard["voice"] == GUARD_VOICE.name and GUARD_VOICE.stat().st_size < 400_000
    assert guard["repetition_penalty"] == 1.2 and guard["alignment"] is False
    speech = torch.tensor([guard["speech_tokens"]])
    assert guard["steps"] == GUARD_STEPS >= 64 and speech.shape[1] == GUARD_STEPS
    assert int(speech.max()) < SPEECH_VOCAB_SIZE

    text, voice = torch.tensor([ids]).expand(2, -1), model.voice(GUARD_VOICE).t3

    @torch.inference_mode()
    def picks(m) -> torch.Tensor:
        """The most likely next token at each of the 64 steps, CFG (weight 0.5) applied, fed fp32's tokens."""
        dtype = m.speech_emb.weight.dtype
        cond = T3Cond(**{k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                         for k, v in vars(voice).items()})
        start = torch.full((2, 1), hp.start_speech_token)
        prefix, _ = m.prepare_input_embeds(t3_cond=cond, text_tokens=text, speech_tokens=start, cfg_weight=0.5)
        fed = torch.cat([start[:1], speech[:, :-1]], dim=1)  # the start token again at position 0, then the tokens
        steps = m.speech_emb(fed) + m.speech_pos_emb.get_fixed_embedding(torch.arange(fed.shape[1]))
        embeds = torch.cat([prefix, steps.to(prefix.dtype).expand(2, -1, -1)], dim=1)
        if getattr(m, "engine", None) is not None:  # llama.cpp computes the speech logits itself
            logits = m.engine.forward(embeds)[:, -GUARD_STEPS:].float()
        else:
            hidden = m.tfmr(inputs_embeds=embeds, use_cache=False).last_hidden_state[:, -GUARD_STEPS:]
            logits = m.speech_head(hidden).float()
        return (1.5 * logits[0] - 0.5 * logits[1]).argmax(-1)

    exact = picks(t3)
    agreement = {r.mode: float((picks(t3_for_mode(t3, r.mode)) == exact).float().mean()) for r in model.mode_reports}
    assert agreement == {r.mode: r.agreement for r in model.mode_reports}
    assert [r.steps for r in model.mode_reports] == [GUARD_STEPS] * len(model.mode_reports)
    holding = [r for r in model.mode_reports if r.mode == "fp32" or agreement[r.mode] >= AUTO_MIN_AGREEMENT]
    assert [r.holds_up for r in model.mode_reports] == [r in holding for r in model.mode_reports]
    assert model.mode == max(holding, key=lambda r: r.tokens_per_second).mode


def test_heuristics_are_off_by_default_where_the_adapter_moved_the_attention_they_read(aligned_checkpoint, corpus,
                                                                                       tmp_path):
    """LoRA on T3's attention (the default targets) changes the heads the v2 heuristics read: by default such a
    model decodes without them (as upstream main decodes every model), an explicit setting still wins, training
    gets the same rule (`decoding.default_alignment`), and the card says which setting and why."""
    from chatterbox_latam.models.config import ModelConfig
    from chatterbox_latam.hub.cards import render_model_card
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import load_t3
    from chatterbox_latam.models.lora import add_t3_lora, save_adapters
    from chatterbox_latam.synthesis.decoding import adapted_watched_attention, default_alignment

    config = ModelConfig(base_model=str(aligned_checkpoint), lora_rank=4)
    t3 = load_t3(resolve_checkpoint(aligned_checkpoint))
    assert default_alignment(GENERATIONS["v2"], t3) and not default_alignment(GENERATIONS["v3"], t3)
    t3 = add_t3_lora(t3, config)
    assert adapted_watched_attention(t3) and not default_alignment(GENERATIONS["v2"], t3)
    folder = save_adapters(tmp_path / "adapter", t3, None, {
        "base_model": str(aligned_checkpoint), "recipe": {"T3 target modules": ", ".join(config.target_modules)}})
    model = ChatterboxLatamTTS.from_pretrained(folder)
    assert model.alignment_matters() and not model.runs_alignment() and model.runs_alignment(True)
    # with a likely stop token the heuristics hold it back until the text is read: the default decodes without them
    _likely_stop(model)
    reference = _reference(corpus)
    default = model.tokens("Hola, buenos días.", reference, seed=0, max_new_tokens=60)
    with_heuristics = model.tokens("Hola, buenos días.", reference, seed=0, max_new_tokens=60, alignment=True)
    without = model.tokens("Hola, buenos días.", reference, seed=0, max_new_tokens=60, alignment=False)
    assert torch.equal(default, without) and with_heuristics.shape[1] > default.shape[1]
    model.alignment = True  # the model-wide setting still wins
    assert model.runs_alignment()
    card = str(render_model_card(folder, "user/chatterbox-es-latam"))
    assert "without its alignment heuristics: the adapter changed T3's layers" in card
    # LoRA on the MLP of the layers below the watched ones moves the maps those heads compute too
    mlp = ModelConfig(base_model=str(aligned_checkpoint), lora_rank=4, target_modules=["gate_proj", "up_proj"])
    assert adapted_watched_attention(add_t3_lora(load_t3(resolve_checkpoint(aligned_checkpoint)), mlp))


def test_adapter_records_how_its_data_was_prepared(tmp_path):
    """`normalize_text: false` at preparation reaches the adapter's metadata (and from there `from_pretrained`)."""
    from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe
    from chatterbox_latam.parser import parse_recipe
    from chatterbox_latam.training.run import preparation_settings

    (tmp_path / "settings.json").write_text(json.dumps({"normalize_text": False, "trim_silence": False,
                                                        "trim_top_db": 30.0, "target_loudness": None}))
    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, ["--prepared_dir", str(tmp_path)]))
    assert preparation_settings(recipe) == {
        "normalize_text": False, "max_prompt_seconds": 6.0,
        "reference_cleaning": {"trim_silence": False, "trim_top_db": 30.0, "target_loudness": None}}
