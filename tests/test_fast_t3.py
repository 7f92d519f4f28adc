"""The fast T3 decoder: in fp32 it gives upstream `T3.inference`'s tokens (same weights, inputs and seed, with
and without an early stop token); decoding several texts at once gives each text's own tokens; bf16, int8 and
int4 agree with fp32 teacher-forced; the synthesis path uses it."""

from __future__ import annotations

import pytest
import torch
from conftest import t3_inputs

from chatterbox_latam.models.loading import build_t3
from chatterbox_latam.synthesis.decoding import (
    UPSTREAM_V2,
    fast_decode,
    fast_decode_batch,
    stream_decode,
)
from chatterbox_latam.synthesis.precision import t3_for_mode, teacher_forced_agreement


def _upstream(t3, cond, text, seed, settings, max_new_tokens=40):
    torch.manual_seed(seed)
    return t3.inference(t3_cond=cond(), text_tokens=torch.cat([text, text]), max_new_tokens=max_new_tokens,
                        temperature=settings.temperature, cfg_weight=settings.cfg_weight,
                        repetition_penalty=settings.repetition_penalty, min_p=settings.min_p, top_p=settings.top_p)


def _ours(t3, cond, text, seed, settings, max_new_tokens=40):
    torch.manual_seed(seed)
    return fast_decode(t3, cond(), text, max_new_tokens, settings)


@pytest.mark.parametrize("settings", [UPSTREAM_V2, UPSTREAM_V2.replace(temperature=0.3, cfg_weight=0.0,
                                                                           repetition_penalty=1.2, top_p=0.9)])
def test_fp32_tokens_are_upstreams(t3, settings):
    text, cond = t3_inputs(t3)
    for seed in range(3):
        upstream, ours = _upstream(t3, cond, text, seed, settings), _ours(t3, cond, text, seed, settings)
        assert upstream.shape == (1, 40) and torch.equal(upstream, ours), seed


def test_fp32_stops_where_upstream_stops(t3):
    """A stop token made likely (its head row scaled): both stop at the same step, whatever the check interval."""
    text, cond = t3_inputs(t3)
    settings = UPSTREAM_V2
    row = t3.speech_head.weight[t3.hp.stop_speech_token].clone()
    try:
        with torch.no_grad():
            t3.speech_head.weight[t3.hp.stop_speech_token] *= 8
        lengths = []
        for seed in range(4):
            upstream, ours = _upstream(t3, cond, text, seed, settings), _ours(t3, cond, text, seed, settings)
            assert torch.equal(upstream, ours), seed
            assert int(ours[0, -1]) == t3.hp.stop_speech_token
            lengths.append(ours.shape[1])
        assert len(set(lengths)) > 1 and min(lengths) < 8 < max(lengths)  # stops inside and across check windows
    finally:
        with torch.no_grad():
            t3.speech_head.weight[t3.hp.stop_speech_token] = row


# Enough layers and heads for upstream's alignment heuristics (they watch heads of layers 9, 12 and 13), small MLPs.
ALIGNED_LLAMA = {"t3": {"llama": {"num_hidden_layers": 14, "intermediate_size": 256}}}


@pytest.fixture(scope="module")
def multilingual_t3():
    torch.manual_seed(0)
    return build_t3(ALIGNED_LLAMA, multilingual=True).eval()


def test_multilingual_tokens_are_upstreams_with_its_alignment_heuristics(multilingual_t3, t3):
    """A multilingual T3 with the watched layers: upstream runs its alignment analyzer, and so does the fast path by
    default, with the same tokens; with a likely stop token the analyzer's work shows (it holds the stop back
    until the text is read), so turning it off gives other tokens."""
    from chatterbox_latam.synthesis.decoding import runs_alignment

    model = multilingual_t3
    assert runs_alignment(model) and not runs_alignment(t3)
    text, cond = t3_inputs(model)
    settings = UPSTREAM_V2
    row = model.speech_head.weight[model.hp.stop_speech_token].clone()
    try:
        for scale in (1.0, 8.0):
            with torch.no_grad():
                model.speech_head.weight[model.hp.stop_speech_token] = row * scale
            for seed in range(2):
                upstream = _upstream(model, cond, text, seed, settings)
                model.tfmr.config._attn_implementation, model.tfmr.config.output_attentions = "sdpa", False
                hooks = sum(len(layer.self_attn._forward_hooks) for layer in model.tfmr.layers)
                ours = _ours(model, cond, text, seed, settings)
                assert torch.equal(upstream, ours), (scale, seed)
                # the analyzer's hooks and eager attention are undone afterwards (upstream leaves them)
                assert sum(len(layer.self_attn._forward_hooks) for layer in model.tfmr.layers) == hooks
                assert model.tfmr.config._attn_implementation == "sdpa"
                assert all(layer.self_attn.config is model.tfmr.config for layer in model.tfmr.layers)
            torch.manual_seed(0)
            unaligned = fast_decode(model, cond(), text, 40, settings, alignment=False)
            if scale == 8.0:
                assert unaligned.shape[1] < ours.shape[1]  # stops at once without the analyzer
    finally:
        with torch.no_grad():
            model.speech_head.weight[model.hp.stop_speech_token] = row


def _texts(t3, lengths):
    g = torch.Generator().manual_seed(5)
    texts = []
    for length in lengths:
        text = torch.randint(1, 600, (1, length), generator=g)
        text[0, 0], text[0, -1] = t3.hp.start_text_token, t3.hp.stop_text_token
        texts.append(text)
    return texts


@pytest.mark.parametrize("stop_scale,cfg_weight", [(1.0, 0.5), (8.0, 0.5), (8.0, 0.0)])
def test_batched_decoding_gives_each_texts_own_tokens(t3, stop_scale, cfg_weight):
    """Texts of different lengths decoded together (left-padded, masked) give the tokens each gets alone, under
    deterministic sampling (min_p=1 keeps only the most likely token), with each its own budget and stop; with
    `cfg_weight` 0 each text is one row."""
    _, cond = t3_inputs(t3)
    greedy = UPSTREAM_V2.replace(min_p=1.0, cfg_weight=cfg_weight)
    texts, budgets = _texts(t3, [20, 7, 33]), [40, 12, 25]
    row = t3.speech_head.weight[t3.hp.stop_speech_token].clone()
    try:
        with torch.no_grad():
            t3.speech_head.weight[t3.hp.stop_speech_token] *= stop_scale
        alone = [fast_decode(t3, cond(), text, budget, greedy) for text, budget in zip(texts, budgets, strict=True)]
        together = fast_decode_batch(t3, cond(), texts, budgets, greedy)
    finally:
        with torch.no_grad():
            t3.speech_head.weight[t3.hp.stop_speech_token] = row
    for one, batched in zip(alone, together, strict=True):
        assert torch.equal(one, batched)
    if stop_scale == 1.0:  # random weights never stop: each runs to its own budget
        assert [t.shape[1] for t in together] == budgets
    else:
        assert any(int(t[0, -1]) == t3.hp.stop_speech_token for t in together)
    with pytest.raises(ValueError, match="one budget or one per text"):
        fast_decode_batch(t3, cond(), texts, [10, 10], greedy)


def test_a_small_first_chunk_comes_first(t3):
    """`first_chunk_tokens`: the first chunk is handed over at the first stop check past it, the later ones every
    `chunk_tokens`; joined, the tokens are still `fast_decode`'s."""
    text, cond = t3_inputs(t3)
    settings = UPSTREAM_V2
    whole = _ours(t3, cond, text, 0, settings, max_new_tokens=60)
    torch.manual_seed(0)
    chunks = list(stream_decode(t3, cond(), text, 60, settings, chunk_tokens=25, first_chunk_tokens=8))
    assert torch.equal(torch.cat([c for c, _ in chunks], dim=1), whole)
    assert chunks[0][0].shape[1] == 8 and all(c.shape[1] >= 25 for c, _ in chunks[1:-1])


@pytest.mark.parametrize("chunk_tokens", [8, 25])
def test_streamed_tokens_are_the_decoders(t3, chunk_tokens):
    """Tokens handed over while decoding, joined, are `fast_decode`'s, with and without an early stop."""
    text, cond = t3_inputs(t3)
    settings = UPSTREAM_V2
    row = t3.speech_head.weight[t3.hp.stop_speech_token].clone()
    stopped = []
    try:
        for scale, seed in [(1.0, 0), (8.0, 0), (8.0, 1), (8.0, 3)]:
            with torch.no_grad():
                t3.speech_head.weight[t3.hp.stop_speech_token] = row * scale
            whole = _ours(t3, cond, text, seed, settings, max_new_tokens=60)
            torch.manual_seed(seed)
            chunks = list(stream_decode(t3, cond(), text, 60, settings, chunk_tokens=chunk_tokens))
            assert torch.equal(torch.cat([c for c, _ in chunks], dim=1), whole), (scale, seed)
            assert [finished for _, finished in chunks] == [False] * (len(chunks) - 1) + [True]
            assert all(c.shape[1] >= chunk_tokens for c, _ in chunks[:-1])
            stopped.append(int(whole[0, -1]) == t3.hp.stop_speech_token)
            if scale == 1.0:
                assert len(chunks) > 1
    finally:
        with torch.no_grad():
            t3.speech_head.weight[t3.hp.stop_speech_token] = row
    assert any(stopped) and not all(stopped)


@pytest.mark.parametrize("mode,floor", [("bf16", 0.9), ("int8", 0.8), ("int8-wo", 0.8), ("int4-wo", 0.6)])
def test_lower_precision_agrees_teacher_forced(t3, mode, floor):
    text, cond = t3_inputs(t3)
    reference = _ours(t3, cond, text, 0, UPSTREAM_V2)
    fast = t3_for_mode(t3, mode)
    assert teacher_forced_agreement(t3, fast, cond(), text, reference) >= floor
    assert teacher_forced_agreement(t3, t3, cond(), text, reference) == 1.0
    assert _ours(fast, cond, text, 0, UPSTREAM_V2).shape == (1, 40)


def test_synthesis_uses_the_chosen_mode(tiny_checkpoint, corpus):
    from chatterbox_latam import ChatterboxLatamTTS

    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint, mode="int8")
    quantised = model._t3(None)
    assert quantised is not model.tts.t3 and model.mode == "int8"  # a quantised copy; the fp32 model stays
    ran = {"int8": 0, "fp32": 0}
    hooks = [t.tfmr.register_forward_hook(lambda *args, name=name: ran.__setitem__(name, ran[name] + 1))
             for name, t in (("int8", quantised), ("fp32", model.tts.t3))]
    try:
        wav = model.generate("Hola.", audio_prompt_path=reference, seed=0, max_new_tokens=20)
    finally:
        for hook in hooks:
            hook.remove()
    # every decoding step ran on the copy's backbone (the prompt's prefill, then one per token), none on fp32's
    assert ran["int8"] >= 20 and ran["fp32"] == 0 and torch.isfinite(wav).all()
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in quantised.tfmr.modules())
    with pytest.raises(ValueError, match="use one of"):
        model.set_mode("fp8")


def test_quality_guard_picks_the_fastest_mode_that_holds_up(t3):
    from chatterbox_latam.synthesis.precision import auto_candidates, choose_mode

    text, cond = t3_inputs(t3)
    mode, reports, prepared = choose_mode(t3, cond(), text, min_agreement=0.0, tokens=8)
    # every mode this CPU offers (bf16 only where it computes bf16 natively), fp32 first
    assert [r.mode for r in reports] == ["fp32", *[m for m in auto_candidates() if m != "fp32"]]
    assert mode == max(reports, key=lambda r: r.tokens_per_second).mode
    assert prepared is not t3 or mode == "fp32"
    strict, _, prepared = choose_mode(t3, cond(), text, min_agreement=1.01, tokens=8)
    assert strict == "fp32" and prepared is t3  # nothing else holds up: the exact mode, T3 itself


def test_auto_remembers_its_choice_per_machine(t3, tmp_path, monkeypatch):
    """`cache=True`: the second question on the same machine, model and text gets the first one's measurements back
    (not measured again: the same figures), and another text is measured anew."""
    from chatterbox_latam.synthesis.precision import AUTO_CACHE, choose_mode

    monkeypatch.setenv("CHATTERBOX_LATAM_CACHE", str(tmp_path))
    text, cond = t3_inputs(t3)
    first = choose_mode(t3, cond(), text, candidates=("fp32", "int8"), tokens=8, cache=True)
    again = choose_mode(t3, cond(), text, candidates=("fp32", "int8"), tokens=8, cache=True)
    assert (tmp_path / AUTO_CACHE).exists() and again[0] == first[0] and again[1] == first[1]
    other = choose_mode(t3, cond(), text[:, :10], candidates=("fp32", "int8"), tokens=8, cache=True)
    assert other[1] != first[1]


def test_a_cpu_without_bf16_arithmetic_gets_fp32_prefills_and_no_bf16_choice(t3, monkeypatch):
    """On a CPU that only emulates bf16 (an AVX2-only EPYC, say) `auto` does not consider bf16, and the weight-only
    modes compute the prompt's prefill from an fp32 copy; with AVX512-BF16 they use bf16, unless oneDNN is held
    below it (`ONEDNN_MAX_CPU_ISA`)."""
    from chatterbox_latam import utils
    from chatterbox_latam.synthesis.precision import auto_candidates, t3_for_mode

    monkeypatch.setattr(utils, "cpu_info", lambda: ("AMD EPYC 7B12", frozenset({"avx2", "fma"})))
    assert "bf16" not in auto_candidates("cpu") and "int4-wo" in auto_candidates("cpu")
    layer = t3_for_mode(t3, "int4-wo").tfmr.layers[0].mlp.up_proj
    assert layer.prefill_weight.dtype == torch.float32
    text, cond = t3_inputs(t3)
    assert fast_decode(t3_for_mode(t3, "int4-wo"), cond(), text, 4, UPSTREAM_V2).shape[1] == 4
    half = t3_for_mode(t3, "bf16")  # chosen by hand: decodes from bf16 weights, prefills from fp32 ones
    layer = half.tfmr.layers[0].mlp.up_proj
    assert layer.weight.dtype == torch.bfloat16 and layer.prefill_weight.dtype == torch.float32
    x = torch.randn(80, layer.prefill_weight.shape[1])  # more than PREFILL_ROWS
    wide = torch.nn.functional.linear(x, layer.prefill_weight).to(torch.bfloat16)
    assert torch.equal(layer(x), wide)  # a prompt's rows: fp32 arithmetic
    assert torch.equal(layer(x[:2]), torch.nn.functional.linear(x[:2].to(torch.bfloat16), layer.weight))
    assert fast_decode(half, cond(), text, 4, UPSTREAM_V2).shape[1] == 4
    monkeypatch.setattr(utils, "cpu_info", lambda: ("AMD EPYC 9B14", frozenset({"avx2", "avx512_bf16"})))
    assert "bf16" in auto_candidates("cpu")
    assert t3_for_mode(t3, "int4-wo").tfmr.layers[0].mlp.up_proj.prefill_weight.dtype == torch.bfloat16
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN held below bf16: emulated again
    assert "bf16" not in auto_candidates("cpu")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    assert "bf16" in auto_candidates("cpu")
