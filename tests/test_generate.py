"""The one-call inference function and batch generation on the tiny model: WAVs at 24 kHz, long text split into
sentences, blank lines skipped, re-runs skip finished files, a manifest of what was written."""

from __future__ import annotations

import csv

import soundfile as sf
from conftest import run_command

from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS, generate_speech


def test_generate_speech_writes_a_wav_and_splits_long_text(tiny_checkpoint, corpus, tmp_path):
    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    one = generate_speech("Hola.", reference, tmp_path / "one.wav", model=model, seed=0)
    two = generate_speech("Hola. Hola.", reference, tmp_path / "two.wav", model=model, seed=0)
    a, b = sf.info(one), sf.info(two)
    assert a.samplerate == b.samplerate == 24_000
    # two sentences: two utterances and a 0.25 s pause between them
    assert b.duration > 2 * a.duration and not list(tmp_path.glob(".*"))  # no temporary files left


def test_batch_generation_resumes_and_writes_a_manifest(tiny_checkpoint, corpus, tmp_path):
    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    texts = tmp_path / "texts.txt"
    texts.write_text("Hola.\n\n   \nBuenos días.\n", encoding="utf-8")
    out = tmp_path / "out"
    command = ["--model", tiny_checkpoint, "--texts", texts, "--reference", reference, "--output_dir", out, "--seed",
               "0", "--lines_together", "2", "--mode", "int4-wo", "--s3gen", "meanflow"]  # two lines decoded together
    first = run_command("generate", *command)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 written, 0 already there" in first.stdout
    assert sorted(p.name for p in out.glob("*.wav")) == ["audio_0001.wav", "audio_0004.wav"]
    kept = (out / "audio_0001.wav").stat().st_mtime_ns

    texts.write_text("Hola.\n\n   \nBuenos días.\n¿Qué tal?\n", encoding="utf-8")
    second = run_command("generate", *command)
    assert "1 written, 2 already there" in second.stdout, second.stdout + second.stderr[-2000:]
    assert (out / "audio_0001.wav").stat().st_mtime_ns == kept
    rows = list(csv.DictReader((out / "manifest.csv").open(encoding="utf-8")))
    assert [(r["line"], r["status"]) for r in rows] == [("1", "existing"), ("4", "existing"), ("5", "written")]
    assert all(float(r["seconds"]) > 0 for r in rows)


def test_streaming_in_token_chunks_gives_the_sentences_audio(tiny_checkpoint, corpus):
    """Audio every 16 speech tokens while T3 decodes: several chunks per sentence, together as long as the
    sentence-at-a-time stream of the same tokens (same seed: the same tokens, two mel frames each)."""
    import numpy as np

    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    text = "Hola. Adiós."
    by_sentence = list(model.stream(text, reference, seed=0, max_new_tokens=60))
    chunked = list(model.stream(text, reference, seed=0, max_new_tokens=60, chunk_tokens=16))
    assert len(by_sentence) == 2 and len(chunked) >= 6  # 60 tokens a sentence: 4 chunks each (the first holds back)
    assert sum(map(len, chunked)) == sum(map(len, by_sentence))
    joined = np.concatenate(chunked)
    assert np.isfinite(joined).all() and np.abs(joined).max() > 1e-3


def test_streaming_pays_the_reference_prompt_once(tiny_checkpoint, corpus, monkeypatch):
    """After a sentence's first chunk, the flow continues from a rolling context (the end of the reference, then
    the speech made so far) instead of running over the whole prompt and every earlier token again: every later
    chunk's flow sees at most the context and the new tokens, and the audio is as long as without the context, the
    first chunk the same sample for sample."""
    import numpy as np

    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    model.set_s3gen(decoder="meanflow")
    flow = model.s3gen.flow
    seen = []  # (prompt tokens, new tokens) of every flow call

    def recording(**kwargs):
        seen.append((kwargs["prompt_token"].shape[1], kwargs["token"].shape[1]))
        assert kwargs["prompt_feat"].shape[1] == 2 * kwargs["prompt_token"].shape[1] or len(seen) == 1
        return upstream(**kwargs)

    upstream = flow.inference
    monkeypatch.setattr(flow, "inference", recording)
    prompt = model.s3gen_reference(model.voice(reference)).get("prompt_token").shape[1]
    settings = dict(seed=0, max_new_tokens=60, chunk_tokens=16, first_chunk_tokens=8)
    whole = list(model.stream("Hola.", reference, context_seconds=None, **settings))
    growing, seen[:] = list(seen), []
    rolling = list(model.stream("Hola.", reference, context_seconds=0.8, **settings))  # 20 tokens
    assert len(rolling) == len(whole) >= 4 and sum(map(len, rolling)) == sum(map(len, whole))
    assert np.array_equal(rolling[0], whole[0]) and not np.array_equal(np.concatenate(rolling), np.concatenate(whole))
    assert all(p == prompt for p, _ in growing)  # the old way: the whole prompt and all tokens, every time
    assert [n for _, n in growing] == sorted({n for _, n in growing}) and growing[-1][1] > max(n for _, n in seen)
    assert seen[0] == growing[0] and all(p <= 20 and n <= 16 + 8 + 3 for p, n in seen[1:])


def test_s3gen_flow_in_bf16_gives_the_fp32_mel(tiny_checkpoint, corpus, monkeypatch):
    """S3Gen's flow on a bf16 copy (the vocoder stays fp32), from the same tokens, reference and noise as fp32: its
    encoder reads the same prompt (output within 5% relative L2 of fp32's; 0.8% here, 110% when the prompt's token
    ids are rounded in bf16, as upstream's cast of the whole reference dict did), and its mel is fp32's within 25%
    (8% here) where another seed's noise puts it ~100% away. The standard CFM draws its noise with `randn_like` of its
    input, and a CPU draws other numbers in bf16 than in fp32 for one seed, so the test draws it in fp32 for both;
    the meanflow decoder's noise the library draws, in fp32: within 10% with nothing drawn for it (4% here; 120%
    when drawn in bf16). `generate` runs the flow on the copy; the fp32 S3Gen and the cached reference stay as they
    were."""
    import pytest
    import torch

    from chatterbox_latam.synthesis.vocoder import flow_for_mode, flow_mels

    def relative(a, b):
        return float((a.float() - b.float()).norm() / b.float().norm())

    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    ref = model.s3gen_reference(model.voice(reference))
    tokens = torch.randint(0, 6561, (20,), generator=torch.Generator().manual_seed(0))

    def flow(s3gen, seed=0):
        """The flow's encoder output and its mel (2 CFM steps)."""
        seen = []
        hook = s3gen.flow.encoder.register_forward_hook(lambda module, args, out: seen.append(out[0]))
        torch.manual_seed(seed)
        try:
            return seen, flow_mels(s3gen, tokens, ref, 2)
        finally:
            hook.remove()

    model.set_s3gen(decoder="meanflow")
    assert relative(flow(flow_for_mode(model.s3gen, "bf16"))[1], flow(model.s3gen)[1]) < 0.10
    model.set_s3gen()
    draw = torch.randn_like
    monkeypatch.setattr(torch, "randn_like", lambda x, **kw: draw(x, **{**kw, "dtype": torch.float32}).to(x.dtype))
    [encoded], mel = flow(model.tts.s3gen)
    [encoded_bf16], mel_bf16 = flow(flow_for_mode(model.tts.s3gen, "bf16"))
    assert encoded_bf16.dtype == torch.bfloat16 and relative(encoded_bf16, encoded) < 0.05
    assert relative(mel_bf16, mel) < 0.25 < relative(flow(model.tts.s3gen, seed=1)[1], mel)
    monkeypatch.undo()
    assert ref["prompt_token"].dtype == torch.long  # upstream casts the dict it is given: it got a copy

    model.set_s3gen("bf16", cfm_steps=2)
    wav = model.generate("Hola.", reference, seed=0, max_new_tokens=20)
    assert torch.isfinite(wav).all() and wav.abs().max() > 1e-3 and model.s3gen_changes == "S3Gen bf16, 2 flow steps"
    assert next(model.tts.s3gen.parameters()).dtype == torch.float32  # the flow ran on a bf16 copy
    with pytest.raises(ValueError, match="use one of"):
        model.s3gen_mode = "fp8"


def test_meanflow_decoder_through_generate_batch_and_stream(tiny_checkpoint, trained_adapter, corpus, tmp_path):
    """Resemble's meanflow S3Gen (2 steps, no CFG), found in the checkpoint's folder: the same seeded tokens give
    the same length of audio as the standard decoder, but other samples; generate_batch and the chunked stream
    give that length too; bf16 runs on a copy of it; an adapted S3Gen is said to be left out; a folder without
    the weights is a clear error."""
    import pytest
    import torch

    from chatterbox_latam.models.checkpoint import CheckpointNotFoundError
    from chatterbox_latam.synthesis.serving import default_decoder

    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    standard = model.generate("Hola.", reference, seed=0, max_new_tokens=40)
    model.set_s3gen(decoder="meanflow")
    assert model.meanflow_source == str(tiny_checkpoint) and model.s3gen.meanflow and not model.tts.s3gen.meanflow
    assert model.s3gen_changes == "meanflow S3Gen decoder"
    fast = model.generate("Hola.", reference, seed=0, max_new_tokens=40)
    assert fast.shape == standard.shape and torch.isfinite(fast).all() and not torch.equal(fast, standard)
    [batched] = model.generate_batch(["Hola."], reference, seed=0, max_new_tokens=40)
    assert torch.equal(batched, fast)
    streamed = list(model.stream("Hola.", reference, seed=0, max_new_tokens=40, chunk_tokens=16))
    assert len(streamed) >= 2 and sum(map(len, streamed)) == fast.shape[1]
    model.set_s3gen("bf16", decoder="meanflow")
    assert model.generate("Hola.", reference, seed=0, max_new_tokens=40).shape == fast.shape
    assert next(model.s3gen.parameters()).dtype == torch.float32  # the flow ran on a bf16 copy

    adapted = ChatterboxLatamTTS.from_pretrained(trained_adapter, s3gen="meanflow")
    assert adapted.s3gen_changes == "meanflow S3Gen decoder (the fine-tuned S3Gen is not used with it)"
    # the Space's default keeps a fine-tuned S3Gen; a base's is replaced by the meanflow decoder on a CPU
    assert default_decoder("cpu", adapted.s3gen_adapted()) == "standard"
    assert default_decoder("cpu", model.s3gen_adapted()) == "meanflow" != default_decoder("cuda", False)
    with pytest.raises(CheckpointNotFoundError, match="holds no s3gen_meanflow.safetensors"):
        model.set_s3gen(decoder="meanflow", meanflow_model=tmp_path)
    with pytest.raises(ValueError, match="use one of"):
        model.set_s3gen(decoder="turbo")


def test_a_shorter_s3gen_prompt_keeps_the_references_end(tiny_checkpoint, corpus, monkeypatch):
    """`s3gen_prompt_seconds` cuts the flow's prompt to the reference's last second (25 tokens, 50 mel frames):
    what `generate` hands the flow, the cached voice left whole."""
    import torch

    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    conds = model.voice(reference)
    full = conds.gen["prompt_token"].shape[1]
    model.s3gen_prompt_seconds = 1.0
    ref = model.s3gen_reference(conds)
    assert ref["prompt_token"].shape[1] == 25 < full and ref["prompt_feat"].shape[1] == 50
    assert int(ref["prompt_token"][0, -1]) == int(conds.gen["prompt_token"][0, -1])  # the end is kept
    assert conds.gen["prompt_token"].shape[1] == full  # the cached voice is unchanged
    flow, seen = model.tts.s3gen.flow, []
    upstream = flow.inference

    def recording(**kwargs):
        seen.append((kwargs["prompt_token"][0].tolist(), kwargs["prompt_feat"].shape[1]))
        return upstream(**kwargs)

    monkeypatch.setattr(flow, "inference", recording)
    wav = model.generate("Hola.", reference, seed=0, max_new_tokens=20)
    assert seen == [(ref["prompt_token"][0].tolist(), 50)] and torch.isfinite(wav).all()
    assert conds.gen["prompt_token"].shape[1] == full


def test_sentences_decoded_together_keep_their_order(tiny_checkpoint, corpus):
    """With batch_size above 1, sentences are batched by length, and each text gets its own sentences back in
    order: under deterministic sampling, the same audio (lengths) as one at a time."""
    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    texts = ["Una frase más larga. Sí.", "Hola."]
    greedy = {"min_p": 1.0, "seed": 0}  # the untrained T3 runs to each sentence's budget, which grows with its text
    alone = [w.shape[1] for w in model.generate_batch(texts, reference, **greedy)]
    model.batch_size = 3
    together = [w.shape[1] for w in model.generate_batch(texts, reference, **greedy)]
    assert together == alone and alone[0] > alone[1]


def test_a_text_sounds_the_same_from_generate_generate_batch_and_stream(tiny_checkpoint, corpus):
    """Seeded, one sentence at a time: `generate_batch` gives each text what `generate` gives it alone, and
    `stream` the same tokens (the same length of audio; it watermarks sentence by sentence, so not the same
    samples)."""
    import torch

    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint)
    two = "Hola. ¿Qué tal?"
    alone = model.generate(two, reference, seed=3, max_new_tokens=30)
    first, second = model.generate_batch(["Buenos días.", two], reference, seed=3, max_new_tokens=30)
    assert torch.equal(second, alone) and not torch.equal(first[:, : alone.shape[1]], alone[:, : first.shape[1]])
    streamed = list(model.stream(two, reference, seed=3, max_new_tokens=30))
    assert sum(map(len, streamed)) == alone.shape[1]
