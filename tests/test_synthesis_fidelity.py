"""Synthesis feeds upstream's modules as upstream does: a stop held back draws only speech tokens (whatever the
alignment heuristics say), the meanflow decoder gets Chatterbox-Turbo's silence tail, T3's prompt is as long as the
training prompts were, and a prompt cut for S3Gen keeps each token's own mel frames."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from chatterbox_latam.constants import SAMPLES_PER_TOKEN, SPEECH_VOCAB_SIZE
from chatterbox_latam.models.loading import build_t3
from chatterbox_latam.synthesis.decoding import UPSTREAM_V2, fast_decode, runs_alignment
from chatterbox_latam.synthesis.tts import GUARD_VOICE, ChatterboxLatamTTS

ALIGNED_LLAMA = {"t3": {"llama": {"num_hidden_layers": 14, "intermediate_size": 256}}}
"""Enough layers for upstream's alignment heuristics (they watch heads of layers 9, 12 and 13)."""


def _inputs(t3):
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    g = torch.Generator().manual_seed(1)
    text = torch.randint(1, 600, (1, 20), generator=g)
    text[0, 0], text[0, -1] = t3.hp.start_text_token, t3.hp.stop_text_token
    emb = torch.randn(1, 256, generator=g)
    cond = T3Cond(speaker_emb=emb / emb.norm(), cond_prompt_speech_tokens=torch.randint(0, 6561, (1, 150), generator=g),
                  emotion_adv=0.5 * torch.ones(1, 1, 1))
    return text, cond


def test_a_held_back_stop_draws_speech_tokens_only(t3):
    """A head that makes T3's special ids (>= 6561) the likeliest: while the stop is held back (`min_new_tokens`,
    the precision guard's steps) every draw is a speech token, and the rest of the budget is as likely as before."""
    text, cond = _inputs(t3)
    head = t3.speech_head.weight.detach().clone()
    try:
        with torch.no_grad():
            t3.speech_head.weight[SPEECH_VOCAB_SIZE:] *= 50
        torch.manual_seed(0)
        held = fast_decode(t3, cond, text, 24, UPSTREAM_V2.replace(min_new_tokens=16))[0]
        assert len(held) >= 16 and bool((held[:16] < SPEECH_VOCAB_SIZE).all())
        assert bool((held[16:] >= SPEECH_VOCAB_SIZE).any())  # afterwards the head has its way again
    finally:
        with torch.no_grad():
            t3.speech_head.weight.copy_(head)


def test_a_stop_the_heuristics_force_is_not_taken_while_held_back():
    """A T3 that repeats one token: upstream's analyzer forces a stop at the first repetition (every logit but the
    stop's at -2**15). With the stop held back, T3's own choice is drawn, not a uniform pick among all 8194 ids."""
    torch.manual_seed(0)
    t3 = build_t3(ALIGNED_LLAMA, multilingual=True).eval()
    assert runs_alignment(t3)
    text, cond = _inputs(t3)
    repeated = 1234
    biased = torch.nn.Linear(t3.speech_head.in_features, t3.speech_head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(t3.speech_head.weight)
        biased.bias.zero_()
        biased.bias[repeated] = 1000.0
    t3.speech_head = biased
    torch.manual_seed(0)
    free = fast_decode(t3, cond, text, 24, UPSTREAM_V2)[0].tolist()
    assert free == [repeated, repeated, t3.hp.stop_speech_token]  # the analyzer's forced stop
    torch.manual_seed(0)
    held = fast_decode(t3, cond, text, 24, UPSTREAM_V2.replace(min_new_tokens=20))[0].tolist()
    assert held[:20] == [repeated] * 20


@pytest.fixture(scope="module")
def meanflow_model(tiny_checkpoint):
    return ChatterboxLatamTTS.from_pretrained(tiny_checkpoint, s3gen="meanflow")


def test_the_meanflow_decoder_ends_as_chatterbox_turbo_ends(meanflow_model, corpus):
    """The same tokens through upstream's `ChatterboxTurboTTS.generate` (its T3 replaced by one that returns them):
    our audio is Turbo's up to the end of the last real token (Turbo's three silence tokens cut), whole and as the
    stream's last chunk; fed without the silence, the decoder makes other audio."""
    from chatterbox.tts_turbo import ChatterboxTurboTTS, Conditionals

    from chatterbox_latam.synthesis.streaming import ChunkedVocoder
    from chatterbox_latam.synthesis.vocoder import tokens_to_wav

    model = meanflow_model
    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    conds = model.voice(reference)
    tokens = model.tokens("Hola, ¿cómo estás?", reference, seed=0, max_new_tokens=30)
    valid = tokens[tokens < SPEECH_VOCAB_SIZE]

    class FixedTokens:  # Turbo's T3 stand-in: the multilingual T3's tokens
        def inference_turbo(self, **_):
            return tokens

    class TextIds:  # Turbo's GPT-2 tokenizer stand-in (the text is not read: the tokens are fixed)
        def __call__(self, text, **_):
            return type("Encoded", (), {"input_ids": torch.zeros(1, 1, dtype=torch.long)})()

    class NoWatermark:  # both sides unwatermarked (ours: watermark=False)
        def apply_watermark(self, wav, sample_rate):
            return wav

    turbo = ChatterboxTurboTTS(FixedTokens(), model.s3gen, model.tts.ve, TextIds(), "cpu",
                               Conditionals(conds.t3, conds.gen))
    turbo.watermarker = NoWatermark()
    torch.manual_seed(0)
    upstream = turbo.generate("hola")[0].numpy()
    torch.manual_seed(0)
    ours = tokens_to_wav(model.s3gen, tokens, conds.gen, watermark=False)
    n = len(valid)
    assert len(upstream) == (n + 3) * SAMPLES_PER_TOKEN and len(ours) == n * SAMPLES_PER_TOKEN
    np.testing.assert_allclose(ours, upstream[: len(ours)], atol=1e-5)
    torch.manual_seed(0)
    streamed = ChunkedVocoder(model.s3gen, conds.gen)(tokens, finished=True)  # one chunk: the last
    np.testing.assert_allclose(streamed, ours, atol=1e-5)
    torch.manual_seed(0)
    unpadded = model.s3gen.inference(speech_tokens=valid, ref_dict=conds.gen)[0][0].numpy()
    assert len(unpadded) == len(ours) and not np.allclose(unpadded, ours, atol=1e-3)


def test_the_standard_decoder_is_upstreams_and_a_one_token_utterance_is_faded_not_refused(tiny_checkpoint, corpus):
    """`tokens_to_wav` runs upstream's `S3Gen.inference` in its two steps: the same audio for an utterance; and
    after a reference with an odd number of mel frames (one frame more than two a token, which `embed_ref` warns
    of and keeps), an utterance of one token (a T3 that stopped at once) comes out one frame short, shorter than
    upstream's fade-in (upstream's `inference` fails on it): we fade what there is."""
    from chatterbox_latam.synthesis.vocoder import tokens_to_wav, with_prompt

    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    ref = model.voice(sorted((corpus / "audio").rglob("*.wav"))[0]).gen
    n = ref["prompt_token"].shape[1] - 1
    odd = with_prompt(ref, ref["prompt_token"][:, :n], ref["prompt_feat"][:, : 2 * n + 1])
    tokens = torch.arange(40, 60)
    torch.manual_seed(0)
    upstream = model.s3gen.inference(speech_tokens=tokens, ref_dict=odd)[0][0].numpy()
    torch.manual_seed(0)
    ours = tokens_to_wav(model.s3gen, tokens, odd, watermark=False)
    np.testing.assert_allclose(ours, upstream, atol=1e-5)
    one = tokens[:1]
    wav = tokens_to_wav(model.s3gen, one, odd, watermark=False)
    assert 0 < len(wav) <= SAMPLES_PER_TOKEN
    assert np.all(wav[: min(len(wav), len(model.s3gen.trim_fade) // 2)] == 0)  # the fade's silent first half


def test_t3_prompt_is_as_long_as_the_training_prompts(tiny_checkpoint, tmp_path):
    """An adapter trained on 3 s prompts (adapter.json's max_prompt_seconds): T3's prompt is the S3 tokens of the
    reference's first 3 s tokenised alone, as preparation made the training prompts; other models keep upstream's
    6 s."""
    import librosa

    from chatterbox_latam.models.config import ModelConfig
    from chatterbox_latam.models.checkpoint import resolve_checkpoint
    from chatterbox_latam.models.loading import load_t3
    from chatterbox_latam.models.lora import add_t3_lora, save_adapters

    t3 = add_t3_lora(load_t3(resolve_checkpoint(tiny_checkpoint)),
                     ModelConfig(base_model=str(tiny_checkpoint), lora_rank=4))
    folder = save_adapters(tmp_path / "adapter", t3, None,
                           {"base_model": str(tiny_checkpoint), "max_prompt_seconds": 3.0})
    model = ChatterboxLatamTTS.from_pretrained(folder)
    assert model.t3_prompt_seconds == 3.0
    prompt = model.voice(GUARD_VOICE).t3.cond_prompt_speech_tokens
    wav_16k = librosa.resample(librosa.load(GUARD_VOICE, sr=24_000)[0], orig_sr=24_000, target_sr=16_000)
    alone, _ = model.tts.s3gen.tokenizer.forward([wav_16k[: 3 * 16_000]], max_len=150)
    assert prompt.shape == (1, 75) and torch.equal(prompt.cpu(), torch.atleast_2d(alone).cpu())
    upstream = ChatterboxLatamTTS(model.tts)
    assert upstream.t3_prompt_seconds == 6.0
    assert upstream.voice(GUARD_VOICE).t3.cond_prompt_speech_tokens.shape == (1, 150)
    assert model.tts.ENC_COND_LEN == 6 * 16_000  # upstream's model is left as it was


def test_a_cut_prompt_keeps_each_tokens_own_mel_frames(tiny_checkpoint, tmp_path):
    """A reference with an odd number of mel frames (S3Gen's `embed_ref` keeps frames // 2 tokens): the prompt cut
    to its last 25 tokens keeps their frames, 2i and 2i + 1 from the start, not the last 50 frames; the stream's
    rolling context starts from the same frames."""
    from chatterbox_latam.synthesis.streaming import ChunkedVocoder

    samples, rate = sf.read(GUARD_VOICE, dtype="float32")
    odd = tmp_path / "odd.wav"
    sf.write(odd, samples[:48_480], rate, subtype="FLOAT")  # 2.02 s: 101 mel frames, 50 tokens
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    conds = model.voice(odd)
    n = conds.gen["prompt_token"].shape[1]
    assert conds.gen["prompt_feat"].shape[1] == 2 * n + 1
    model.s3gen_prompt_seconds = 1.0
    cut = model.s3gen_reference(conds)
    assert torch.equal(cut["prompt_token"], conds.gen["prompt_token"][:, -25:])
    assert torch.equal(cut["prompt_feat"], conds.gen["prompt_feat"][:, 2 * (n - 25): 2 * n])
    rolling = ChunkedVocoder(model.s3gen, conds.gen, context_tokens=25)._rolling_reference(0)
    assert torch.equal(rolling["prompt_token"], cut["prompt_token"])
    assert torch.equal(rolling["prompt_feat"], cut["prompt_feat"])
