"""T3's backbone on llama.cpp: the GGUF mapping computes what T3 computes, each engine mode's tokens against fp32
under deterministic sampling, the modes through `ChatterboxLatamTTS`, and the GGUF `merge.py --gguf` exports
loading back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_command, t3_inputs

from chatterbox_latam.synthesis.cpu_fast.engine import LlamaCppBackbone, amx_runs, cpu_buffer_types, engine_t3
from chatterbox_latam.synthesis.cpu_fast.gguf import write_t3_gguf
from chatterbox_latam.synthesis.decoding import (
    UPSTREAM_V2,
    fast_decode,
    fast_decode_batch,
)
from chatterbox_latam.synthesis.precision import teacher_forced_agreement
from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_the_gguf_backbone_computes_what_t3_computes(t3, tmp_path):
    """f32 weights: llama.cpp's hidden states are PyTorch's (q/k rows permuted to llama.cpp's rotary pairs, the
    Llama-3 frequency factors), whole sequences, prefill then steps, and a left-padded row alike."""
    path = write_t3_gguf(t3, tmp_path / "t3.gguf", "f32")
    engine = LlamaCppBackbone(path, t3.tfmr.config)
    assert "CPU" in cpu_buffer_types() and not engine.amx_avoided  # f32 weights never go into AMX buffers
    embeds = torch.randn(2, 40, 1024, generator=torch.Generator().manual_seed(0)) * 0.5
    with torch.inference_mode():
        expected = t3.tfmr(inputs_embeds=embeds, use_cache=False, return_dict=True).last_hidden_state
    assert _relative(engine.forward(embeds), expected) < 1e-3
    steps = [engine.prefill(embeds[:, :30], [0], 10)] + [engine.step(embeds[:, i]) for i in range(30, 40)]
    assert _relative(torch.stack(steps, 1), expected[:, 29:]) < 1e-3  # its KV cache holds f16: not exact
    padded = torch.cat([torch.zeros(2, 5, 1024), embeds[:, :30]], dim=1)
    assert _relative(engine.prefill(padded, [5], 10), expected[:, 29]) < 1e-3
    wrong = write_t3_gguf(t3, tmp_path / "q4.gguf", "q4_0")
    assert _relative(LlamaCppBackbone(wrong, t3.tfmr.config).forward(embeds), expected) > 1e-3  # 4 bits differ


def test_amx_buffers_run_where_the_cpu_offers_them(t3, tmp_path):
    """On a CPU with AMX, `make install`'s llama.cpp runs its AMX matrix product (the probe's subprocess decodes a
    CFG pair with it), so 4-bit weights go into the AMX buffers, and compute what they compute without them. (A
    library compiled without -fno-dse by GCC 12 crashes there: the probe answers False and the weights stay out.)"""
    if "AMX" not in cpu_buffer_types():
        pytest.skip("this CPU offers no AMX buffers")
    path = write_t3_gguf(t3, tmp_path / "q4.gguf", "q4_0")
    assert amx_runs(path)
    amx, plain = LlamaCppBackbone(path, t3.tfmr.config), LlamaCppBackbone(path, t3.tfmr.config, amx=False)
    assert not amx.amx_avoided and plain.amx_avoided
    embeds = torch.randn(2, 40, 1024, generator=torch.Generator().manual_seed(0)) * 0.5
    steps = {name: [backbone.prefill(embeds[:, :30], [0], 10)] + [backbone.step(embeds[:, i]) for i in range(30, 40)]
             for name, backbone in (("amx", amx), ("plain", plain))}
    assert _relative(torch.stack(steps["amx"], 1), torch.stack(steps["plain"], 1)) < 0.05


INTERLEAVED = """
import sys, torch
from types import SimpleNamespace
from chatterbox_latam.synthesis.cpu_fast.engine import LlamaCppBackbone
backbone = LlamaCppBackbone(sys.argv[1], SimpleNamespace(hidden_size=1024))
a = torch.randn(256, 1024, dtype=torch.bfloat16)
for _ in range(3):  # oneDNN's bf16 kernels (AMX where the CPU has it) on PyTorch's threads, then llama.cpp's
    a @ a.T
    backbone.prefill(torch.randn(2, 40, 1024), [0], 4)
    backbone.step(torch.randn(2, 1024))
print(backbone.amx_avoided)
"""


def test_llamacpp_and_pytorch_take_turns_in_one_process(t3, tmp_path):
    """PyTorch's bf16 matrix products and llama.cpp's 4-bit ones alternate, as in `auto`'s timing and in synthesis
    (oneDNN releases the AMX tiles that ggml configured once per thread: llama.cpp's calls keep a thread of their
    own). In a subprocess: the failure is a crash."""
    path = write_t3_gguf(t3, tmp_path / "q4.gguf", "q4_0")
    done = subprocess.run([sys.executable, "-c", INTERLEAVED, str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str("AMX" in cpu_buffer_types() and not amx_runs(path))


def test_engine_modes_against_fp32_under_greedy_sampling(t3):
    """Greedy (min_p=1: deterministic) tokens: f32 weights give fp32's exactly; 8 and 4 bits are judged by
    teacher-forced agreement, as the `auto` guard judges them; utterances decoded together are separate sequences
    (a left-padded one computes what it computes alone) and each gets its budget's worth of tokens."""
    text, cond = t3_inputs(t3)
    greedy = UPSTREAM_V2.replace(min_p=1.0)
    reference = fast_decode(t3, cond(), text, 40, greedy)
    agreements = {}
    for weights in ("f32", "q8_0", "q4_0"):
        engine = engine_t3(t3, "llamacpp-q4_0", weights=weights)
        tokens = fast_decode(engine, cond(), text, 40, greedy)
        agreements[weights] = teacher_forced_agreement(t3, engine, cond(), text, reference)
        if weights == "f32":
            assert torch.equal(tokens, reference)
    print(f"teacher-forced agreement with fp32: {agreements}")
    assert agreements["f32"] == 1.0 and agreements["q8_0"] >= 0.95 and agreements["q4_0"] >= 0.75
    engine = engine_t3(t3, "llamacpp-q8_0").engine
    rows = torch.randn(4, 30, 1024, generator=torch.Generator().manual_seed(3)) * 0.5
    rows[2:, :10] = 0  # the second CFG pair is 20 tokens long, left-padded to 30
    together = engine.prefill(rows, [0, 10], 5)
    alone = torch.cat([engine.prefill(rows[:2], [0], 5), engine.prefill(rows[2:, 10:], [0], 5)])
    assert _relative(together, alone) < 1e-2  # the same up to the kernels' summation order
    shorter = text[:, :12].clone()
    shorter[0, -1] = t3.hp.stop_text_token
    tokens = fast_decode_batch(engine_t3(t3, "llamacpp-q8_0"), cond(), [text, shorter], [30, 20], greedy)
    assert [t.shape[1] for t in tokens] == [30, 20]  # random weights never stop: each runs to its own budget
    # cfg_weight 0: one sequence per utterance (no unconditional row), the same tokens as fp32's at f32
    no_cfg = UPSTREAM_V2.replace(min_p=1.0, cfg_weight=0.0)
    exact = engine_t3(t3, "llamacpp-q4_0", weights="f32")
    assert torch.equal(fast_decode(exact, cond(), text, 40, no_cfg), fast_decode(t3, cond(), text, 40, no_cfg))
    together = fast_decode_batch(exact, cond(), [text, shorter], [30, 20], no_cfg)
    assert [torch.equal(t, fast_decode(t3, cond(), one, budget, no_cfg))
            for t, one, budget in zip(together, [text, shorter], [30, 20], strict=True)] == [True, True]


def test_engine_modes_through_the_model(tiny_checkpoint, corpus):
    """A model at `llamacpp-q4_0`: speech through generate, generate_batch and stream, without the alignment
    heuristics (llama.cpp exposes no attention maps), its T3 a copy with the backbone on llama.cpp."""
    reference = sorted((corpus / "audio").rglob("*.wav"))[0]
    model = ChatterboxLatamTTS.from_pretrained(tiny_checkpoint, mode="llamacpp-q4_0")
    assert model._t3(None).engine is not None and model.tts.t3.tfmr is not None
    assert not model.runs_alignment(True)
    wav = model.generate("Hola.", reference, seed=0, max_new_tokens=20)
    [batched] = model.generate_batch(["Hola."], reference, seed=0, max_new_tokens=20)
    streamed = list(model.stream("Hola.", reference, seed=0, max_new_tokens=20, chunk_tokens=8))
    assert wav.abs().max() > 1e-3 and torch.equal(batched, wav) and sum(map(len, streamed)) == wav.shape[1]


def test_merge_writes_a_gguf_that_loads_back(trained_adapter, tmp_path):
    """`merge.py --gguf`: t3-q4_0.gguf beside the merged weights; llama.cpp loads it and computes the merged T3's
    hidden states (within 4-bit rounding); the speech head is its output layer at 8 bits."""
    import gguf

    out = tmp_path / "merged"
    run = run_command("merge", "--adapter", trained_adapter, "--output_dir", out, "--gguf")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "T3 for llama.cpp in t3-q4_0.gguf" in run.stdout
    assert json.loads((out / "config.json").read_text())["gguf"] == "t3-q4_0.gguf"
    tensors = {t.name: t for t in gguf.GGUFReader(out / "t3-q4_0.gguf").tensors}
    assert tensors["output.weight"].tensor_type.name == "Q8_0" and int(tensors["output.weight"].shape[1]) == 8194
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == "Q4_0"
    merged = ChatterboxLatamTTS.from_pretrained(out).tts.t3
    embeds = torch.randn(2, 30, 1024, generator=torch.Generator().manual_seed(0)) * 0.5
    with torch.inference_mode():
        expected = merged.tfmr(inputs_embeds=embeds, use_cache=False, return_dict=True).last_hidden_state
    assert _relative(LlamaCppBackbone(out / "t3-q4_0.gguf", merged.tfmr.config).forward(embeds), expected) < 0.2


def test_the_conditioning_is_computed_once_per_voice(t3, tmp_path):
    """Rows that start with the same conditioning: it is computed once, kept, and copied into each row's sequence;
    the logits are those of the whole prompt computed afresh, and another voice's conditioning is computed anew."""
    engine = LlamaCppBackbone(write_t3_gguf(t3, tmp_path / "t3.gguf", "f32"), t3.tfmr.config, logits=True)
    generator = torch.Generator().manual_seed(4)
    voice, other = torch.randn(1, 12, 1024, generator=generator), torch.randn(1, 12, 1024, generator=generator)
    texts = torch.randn(2, 8, 1024, generator=generator)
    rows = torch.cat([voice.expand(2, -1, -1), texts], dim=1) * 0.5
    step = texts[:, 0] * 0.5
    fresh = [engine.prefill(rows, [0], 5)] + [engine.step(step) for _ in range(2)]
    shared = [engine.prefill(rows, [0], 5, shared=12)] + [engine.step(step) for _ in range(2)]
    again = [engine.prefill(rows, [0], 5, shared=12)] + [engine.step(step) for _ in range(2)]
    assert engine.prefixes_computed == 1
    assert max(_relative(a, b) for a, b in zip(shared + again, fresh + fresh, strict=True)) < 1e-4
    engine.prefill(torch.cat([other.expand(2, -1, -1), texts], dim=1) * 0.5, [0], 5, shared=12)
    assert engine.prefixes_computed == 2
