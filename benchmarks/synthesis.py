"""Synthesis speed: upstream `T3.inference` against the fast decoder's modes, on the same weights and inputs.

    python benchmarks/synthesis.py [--full-size] [--device cpu|cuda] [--tokens 40] [--batch 8] [--cfg_weight 0.5]
                                    [--t3_only]

Builds a random-init T3 (upstream's full size with --full-size: 30 layers, 536M parameters; else the tiny one)
and S3Gen (the standard decoder and the meanflow one) from the upstream classes, then, for upstream and each mode
(fp32, bf16; on CPU int8, int8-wo, int4-wo and llama.cpp's llamacpp-q4_0 / llamacpp-q8_0):
- T3 decode tokens/s for one sentence as synthesis runs it (with upstream's alignment heuristics where upstream
  runs them, and without), decoding only (the prompt's prefill is timed on its own), its ratio to upstream,
  whether fp32 gives upstream's tokens, teacher-forced agreement with fp32;
- T3 decode throughput with --batch sentences decoded together (`fast_decode_batch`), in tokens/s over all;
- S3Gen: flow time per number of CFM steps, per reference length, in bf16 (with its difference from fp32, beside
  fp32's difference from itself with another noise draw), for up to 4 utterances batched against one by one; the
  vocoder on its own;
- the meanflow decoder (2 steps, no CFG batch): its flow time, in bf16 and with a shorter prompt;
- streaming (`ChunkedVocoder`, a first chunk of --first_chunk_tokens, then every --chunk_tokens): S3Gen's time
  for the first chunk, and for the whole utterance in chunks, with the flow over the whole prompt at every chunk
  and with the rolling context `stream` uses, beside one pass;
- end-to-end real-time factor, and time to first audio for a whole sentence and streamed, with upstream's S3Gen,
  the fastest standard settings, meanflow and meanflow at its fastest;
- the memory each mode's T3 adds (resident set size after preparing it);
- the mode `auto` picks (its own timing) against the fastest here among the modes whose agreement holds up.
Random weights never emit the stop token, so every run decodes exactly --tokens (default 100: a 4 s sentence).
The last line is the best end-to-end real-time factor against upstream's, with its T3 mode and S3Gen settings.
"""

from __future__ import annotations

import argparse
import time

import torch

from chatterbox_latam.compat import attention_implementation
from chatterbox_latam.constants import SPEECH_VOCAB_SIZE, STREAM_CONTEXT_SECONDS, TOKENS_PER_SECOND
from chatterbox_latam.models.loading import build_s3gen, build_t3
from chatterbox_latam.synthesis.config import GenerationSettings
from chatterbox_latam.synthesis.decoding import (
    UPSTREAM_V2,
    cfg_rows,
    fast_decode,
    fast_decode_batch,
    runs_alignment,
)
from chatterbox_latam.synthesis.precision import (
    AUTO_MIN_AGREEMENT,
    auto_candidates,
    available_modes,
    choose_mode,
    t3_for_mode,
    teacher_forced_agreement,
)
from chatterbox_latam.synthesis.streaming import ChunkedVocoder
from chatterbox_latam.synthesis.vocoder import flow_for_mode, flow_mels
from chatterbox_latam.testing.tiny_model import TINY_CONFIG
from chatterbox_latam.utils import cpu_description, default_device


def _inputs(t3, device):
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    g = torch.Generator().manual_seed(1)
    text = torch.randint(1, 600, (1, 60), generator=g)
    text[0, 0], text[0, -1] = t3.hp.start_text_token, t3.hp.stop_text_token
    emb = torch.randn(1, 256, generator=g)
    prompt = torch.randint(0, SPEECH_VOCAB_SIZE, (1, 150), generator=g)

    def cond():
        return T3Cond(speaker_emb=(emb / emb.norm()).to(device), cond_prompt_speech_tokens=prompt.to(device),
                      emotion_adv=0.5 * torch.ones(1, 1, 1, device=device))

    return text.to(device), cond


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(function, device):
    _sync(device)
    start = time.perf_counter()
    result = function()
    _sync(device)
    return result, time.perf_counter() - start


def _resident() -> float:
    """This process's resident memory in GB."""
    import psutil

    return psutil.Process().memory_info().rss / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="Upstream's sizes (the figures README quotes).")
    parser.add_argument("--device", default=default_device(), choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=100, help="Speech tokens per run (25 per second of audio).")
    parser.add_argument("--cfm_steps", type=int, nargs="+", default=[10, 5], help="S3Gen CFM steps to time.")
    parser.add_argument("--prompt_seconds", type=int, nargs="+", default=[6, 10, 3],
                        help="Reference lengths to time S3Gen's flow with (the first is used for the rest).")
    parser.add_argument("--cfg_weight", type=float, default=GenerationSettings.cfg_weight,
                        help="CFG's weight (upstream's 0.5); at 0 the fast decoders leave the unconditional row out "
                             "(it cannot count there), upstream computes it anyway.")
    parser.add_argument("--batch", type=int, default=8, help="Sentences decoded together for the throughput figure.")
    parser.add_argument("--chunk_tokens", type=int, default=25, help="Streaming: tokens per chunk after the first.")
    parser.add_argument("--first_chunk_tokens", type=int, default=16, help="Streaming: tokens of the first chunk.")
    parser.add_argument("--t3_only", action="store_true",
                        help="T3's modes and `auto`'s choice only (S3Gen's share does not depend on T3's mode).")
    parser.add_argument("--context_seconds", type=float, default=STREAM_CONTEXT_SECONDS,
                        help="Streaming: the rolling context the flow continues from after the first chunk.")
    args = parser.parse_args(argv)
    device, n = args.device, args.tokens
    config = {} if args.full_size else TINY_CONFIG
    torch.manual_seed(0)
    # Upstream's multilingual inference hooks layers 9-13: the tiny (2-layer) T3 runs at the English configuration.
    t3 = build_t3(config, multilingual=args.full_size).to(device).eval()
    text, cond = _inputs(t3, device)
    settings = UPSTREAM_V2.replace(cfg_weight=args.cfg_weight)
    print(cpu_description() if torch.device(args.device).type == "cpu" else torch.cuda.get_device_name())
    print(f"T3 {'full size' if args.full_size else 'tiny'}: {sum(p.numel() for p in t3.parameters()) / 1e6:.0f}M "
          f"parameters, {t3.cfg.num_hidden_layers} layers; device {device}, {torch.get_num_threads()} threads; "
          f"{n} tokens, cfg_weight {settings.cfg_weight} (backbone rows: upstream 2, ours {cfg_rows(settings)})")

    def upstream(tokens=n):
        torch.manual_seed(0)
        # (upstream's alignment analyzer would leave the backbone in eager attention with attention outputs on)
        with attention_implementation(t3.tfmr.config):
            return t3.inference(t3_cond=cond(), text_tokens=torch.cat([text, text]), max_new_tokens=tokens,
                                temperature=settings.temperature, cfg_weight=settings.cfg_weight,
                                repetition_penalty=settings.repetition_penalty, min_p=settings.min_p,
                                top_p=settings.top_p)

    def rates(run) -> tuple[torch.Tensor, float, float]:
        """(tokens, decode tokens/s, prefill seconds): one run of 1 token and one of n, so the prompt's prefill
        (the conditioning, text and start token through all layers) is not counted as decoding."""
        run(2)  # warm-up (kernels, allocator)
        _, first = _timed(lambda: run(1), device)
        tokens, total = _timed(lambda: run(n), device)
        return tokens, (n - 1) / max(total - first, 1e-9), first

    upstream_tokens, upstream_rate, upstream_prefill = rates(upstream)
    rows = [("upstream", upstream_rate, 1.0, "-", "-", upstream_prefill)]

    modes = list(available_modes(device))
    memory, new_voice = {}, {}
    reference_tokens = None
    results, batched, unaligned = {}, {}, {}
    aligned = runs_alignment(t3)
    texts = [text[:, : text.shape[1] - 3 * i].clone() for i in range(args.batch)]  # different lengths: padded
    for i in range(len(texts)):
        texts[i][0, -1] = t3.hp.stop_text_token
    for mode in modes:
        before = _resident()
        fast, prepare_time = _timed(lambda: t3_for_mode(t3, mode), device)
        memory[mode] = (_resident() - before, prepare_time)

        def decode(tokens=n, alignment=None, model=fast):  # None: as synthesis runs it
            torch.manual_seed(0)
            return fast_decode(model, cond(), text, tokens, settings, alignment=alignment)

        def decode_batch(tokens=n, model=fast):
            torch.manual_seed(0)
            return fast_decode_batch(model, cond(), texts, tokens, settings)

        tokens, rate, prefill = rates(decode)
        if getattr(fast, "engine", None) is not None:  # it keeps the voice's conditioning: time a new voice too
            fast.engine.forget_prefix()
            new_voice[mode] = _timed(lambda: decode(1), device)[1]
        bare = rates(lambda k=n: decode(k, alignment=False))[1] if aligned else rate
        identical = "-"
        if mode == "fp32":
            reference_tokens = tokens
            identical = "yes" if torch.equal(tokens, upstream_tokens) else "NO"
            agreement = 1.0
        else:
            agreement = teacher_forced_agreement(t3, fast, cond(), text, reference_tokens,
                                                  cfg_weight=settings.cfg_weight)
        _, batch_rate, _ = rates(decode_batch)
        results[mode], batched[mode], unaligned[mode] = rate, batch_rate * args.batch, bare
        rows.append((mode, rate, rate / upstream_rate, identical, f"{agreement:.3f}", prefill))
        del fast

    if aligned:
        print("(one sentence: with upstream's alignment heuristics, as upstream and synthesis run them for this T3; "
              "without them in the next column; several sentences together go without them)")
    print(f"{'T3 decode':<14} {'tokens/s':>9} {'x upstream':>11} {'same tokens':>12} {'teacher-forced':>15} "
          f"{'prefill (s)':>12} {'without heuristics':>19} {f'{args.batch} sentences: tokens/s':>26} "
          f"{'x upstream':>11} {'+memory (GB)':>13} {'prepared in (s)':>16}")
    for name, rate, ratio, identical, agreement, prefill in rows:
        together, bare = batched.get(name), unaligned.get(name)
        extra = (f" {bare:>12.1f} ({bare / upstream_rate:.2f}x) {together:>19.1f} {together / upstream_rate:>10.2f}x"
                 f" {memory[name][0]:>13.2f} {memory[name][1]:>16.1f}" if together else "")
        print(f"{name:<14} {rate:>9.1f} {ratio:>10.2f}x {identical:>12} {agreement:>15} {prefill:>12.2f}{extra}")
    for name, seconds in new_voice.items():
        print(f"{name}: the prefill above is a voice's later sentences' (its conditioning is kept); a new voice's "
              f"first sentence: {seconds:.2f} s")

    # `auto`: its own short timing (prefill and 64 steps per mode) against this run's T3 seconds per sentence, among
    # the modes whose agreement holds up (the guard's threshold).
    chosen, reports, _ = choose_mode(t3, cond(), text, candidates=auto_candidates(device))
    holding = {name: prefill + (n - 1) / rate for name, rate, _, _, agreement, prefill in rows
               if agreement != "-" and float(agreement) >= AUTO_MIN_AGREEMENT
               and name in {r.mode for r in reports}}
    fastest_holding = min(holding, key=holding.get)
    print(f"auto picks {chosen} (its timing: " + ", ".join(f"{r.mode} {r.tokens_per_second:.1f}" for r in reports)
          + f" tokens/s); the fastest T3 for the whole sentence here among the modes agreeing at "
          f"{AUTO_MIN_AGREEMENT:.0%}: {fastest_holding} ({holding[fastest_holding]:.2f} s; {chosen} "
          f"{holding.get(chosen, float('nan')):.2f} s)")
    if args.t3_only:  # S3Gen's share does not depend on T3's mode: T3's seconds rank the modes end to end
        seconds = {name: prefill + (n - 1) / rate for name, rate, _, _, _, prefill in rows}
        print(f"T3 for one sentence ({n} tokens, prefill and decoding): "
              + ", ".join(f"{name} {t:.2f} s" for name, t in seconds.items()))
        slower = [name for name, t in seconds.items() if name not in ("upstream", "fp32") and t > seconds["fp32"]]
        fastest = min(seconds, key=seconds.get)
        print(f"T3 for one sentence: fastest {fastest} {seconds[fastest]:.2f} s, fp32 {seconds['fp32']:.2f} s, "
              f"upstream {seconds['upstream']:.2f} s; slower than fp32: {', '.join(slower) or 'none'}")
        return

    # S3Gen: flow (CFM) and vocoder timed on their own, for the same tokens.
    s3gen = build_s3gen(config).to(device).eval()
    speech = upstream_tokens[0][upstream_tokens[0] < SPEECH_VOCAB_SIZE].to(device)
    audio_seconds = len(speech) / TOKENS_PER_SECOND

    def reference(seconds: int, model=s3gen) -> dict:
        wav = torch.randn(24_000 * seconds, generator=torch.Generator().manual_seed(3)) * 0.1
        return model.embed_ref(wav, 24_000, device=device)

    def flow(tokens, ref, steps, model=s3gen, lengths=None, seed=0):
        torch.manual_seed(seed)  # the CFM's starting noise
        return model.flow_inference(tokens, ref_dict=ref, n_cfm_timesteps=steps, finalize=True,
                                    speech_token_lens=lengths)

    ref = reference(args.prompt_seconds[0])
    flow_times = {}
    for steps in args.cfm_steps:
        flow(speech, ref, steps)  # warm-up
        mel, flow_times[steps] = _timed(lambda: flow(speech, ref, steps), device)
    mel = flow(speech, ref, args.cfm_steps[0])
    _, vocoder_time = _timed(lambda: s3gen.hift_inference(mel), device)
    print(f"S3Gen for {audio_seconds:.1f} s of audio ({args.prompt_seconds[0]} s prompt): "
          + ", ".join(f"flow {t:.2f} s ({s} CFM steps)" for s, t in flow_times.items())
          + f", vocoder {vocoder_time:.2f} s")
    by_prompt = []
    for seconds in args.prompt_seconds[1:]:
        other = reference(seconds)
        _, seconds_taken = _timed(lambda: flow(speech, other, args.cfm_steps[0]), device)
        by_prompt.append(f"{seconds} s prompt {seconds_taken:.2f} s")
    if by_prompt:
        print(f"S3Gen flow ({args.cfm_steps[0]} CFM steps) against the reference prompt's length: "
              + ", ".join(by_prompt))

    default_steps = args.cfm_steps[0]
    utterances = [speech[: len(speech) - 2 * i] for i in range(min(args.batch, 4))]
    _, one_by_one = _timed(lambda: [flow(u, ref, default_steps) for u in utterances], device)
    padded = torch.nn.utils.rnn.pad_sequence(utterances, batch_first=True)
    lengths = torch.tensor([len(u) for u in utterances], device=device)
    _, together = _timed(lambda: flow(padded, ref, default_steps, lengths=lengths), device)
    print(f"S3Gen flow for {len(utterances)} utterances: {one_by_one:.2f} s one by one, {together:.2f} s batched "
          f"({one_by_one / together:.2f}x)")
    half = flow_for_mode(s3gen, "bf16")

    def half_flow(ref_dict, steps):
        torch.manual_seed(0)
        return flow_mels(half, speech, ref_dict, steps)

    half_flow(ref, default_steps)  # warm-up
    mel_half, half_time = _timed(lambda: half_flow(ref, default_steps), device)
    difference = float((mel_half - mel).norm() / mel.norm())
    other_noise = float((flow(speech, ref, default_steps, seed=1) - mel).norm() / mel.norm())
    print(f"S3Gen flow in bf16: {half_time:.2f} s ({flow_times[default_steps] / half_time:.2f}x fp32), mel "
          f"relative difference from fp32 {difference:.3f} (fp32 with another noise draw: {other_noise:.3f})")
    fastest_steps, short_ref = min(args.cfm_steps), reference(min(args.prompt_seconds))
    half_flow(short_ref, fastest_steps)  # warm-up (new shapes)
    _, fastest_flow = _timed(lambda: half_flow(short_ref, fastest_steps), device)
    print(f"S3Gen flow at the fastest settings offered (bf16, {fastest_steps} CFM steps, "
          f"{min(args.prompt_seconds)} s prompt): "
          f"{fastest_flow:.2f} s")

    # The meanflow decoder: 2 steps without the CFG batch, at fp32 and the 6 s prompt (as Resemble runs it), in bf16,
    # and with the short prompt.
    meanflow = build_s3gen(config, meanflow=True).to(device).eval()
    meanflow_half = flow_for_mode(meanflow, "bf16")
    meanflow_ref, meanflow_short = reference(args.prompt_seconds[0], meanflow), reference(min(args.prompt_seconds),
                                                                                          meanflow)

    def meanflow_flow(model, ref_dict):
        torch.manual_seed(0)
        return flow_mels(model, speech, ref_dict, None)

    meanflow_times = {}
    for label, model, ref_dict in (("fp32", meanflow, meanflow_ref), ("bf16", meanflow_half, meanflow_ref),
                                   (f"fp32, {min(args.prompt_seconds)} s prompt", meanflow, meanflow_short),
                                   (f"bf16, {min(args.prompt_seconds)} s prompt", meanflow_half, meanflow_short)):
        meanflow_flow(model, ref_dict)  # warm-up
        _, meanflow_times[label] = _timed(lambda: meanflow_flow(model, ref_dict), device)
    print("S3Gen meanflow decoder (2 steps, no CFG batch): "
          + ", ".join(f"{label} {t:.2f} s" for label, t in meanflow_times.items())
          + f" (the standard decoder, {default_steps} steps: {flow_times[default_steps]:.2f} s; "
          f"{flow_times[default_steps] / meanflow_times['fp32']:.1f}x)")
    meanflow_fastest_label = min(meanflow_times, key=meanflow_times.get)

    # Streaming: S3Gen for a first chunk of --first_chunk_tokens, then every --chunk_tokens, with the flow over the
    # whole prompt and all tokens at every chunk (CosyVoice2's way) and with the rolling context `stream` uses.
    chunk, first_chunk = args.chunk_tokens, args.first_chunk_tokens
    context = round(args.context_seconds * TOKENS_PER_SECOND)
    pieces = [speech[:first_chunk]] + [speech[start: start + chunk] for start in range(first_chunk, len(speech), chunk)]

    def streamed(model, ref_dict, steps, flow=None, context_tokens=None) -> tuple[float, float]:
        """S3Gen seconds for the first chunk's audio, and for the whole utterance in chunks."""
        torch.manual_seed(0)
        vocoder = ChunkedVocoder(model, ref_dict, steps, flow=flow, context_tokens=context_tokens)
        times = [_timed(lambda: vocoder(piece, i == len(pieces) - 1), device)[1] for i, piece in enumerate(pieces)]
        return times[0], sum(times)

    meanflow_fastest_flow = meanflow_half if "bf16" in meanflow_fastest_label else meanflow
    meanflow_fastest_ref = meanflow_short if "prompt" in meanflow_fastest_label else meanflow_ref
    stream_settings = {  # S3Gen settings -> (model, reference, steps, flow copy)
        f"{default_steps} CFM steps": (s3gen, ref, default_steps, None),
        f"bf16, {fastest_steps} CFM steps, {min(args.prompt_seconds)} s prompt": (s3gen, short_ref, fastest_steps,
                                                                                  half),
        "meanflow": (meanflow, meanflow_ref, None, None),
        f"meanflow, {meanflow_fastest_label}": (meanflow, meanflow_fastest_ref, None, meanflow_fastest_flow),
    }
    one_pass = {f"{default_steps} CFM steps": flow_times[default_steps] + vocoder_time,
                f"bf16, {fastest_steps} CFM steps, {min(args.prompt_seconds)} s prompt": fastest_flow + vocoder_time,
                "meanflow": meanflow_times["fp32"] + vocoder_time,
                f"meanflow, {meanflow_fastest_label}": meanflow_times[meanflow_fastest_label] + vocoder_time}
    whole_audio = one_pass[f"{default_steps} CFM steps"]
    fastest_audio = one_pass[f"bf16, {fastest_steps} CFM steps, {min(args.prompt_seconds)} s prompt"]
    first_chunk_s3gen = {}
    print(f"Streaming (S3Gen only; first chunk {first_chunk} tokens, then every {chunk}): first chunk's audio, and "
          f"the whole {audio_seconds:.1f} s in chunks with the flow over the whole prompt and all tokens at every "
          f"chunk / with a rolling context of {args.context_seconds:g} s (as `stream` runs it) / in one pass:")
    for label, (model, ref_dict, steps, flow_copy) in stream_settings.items():
        streamed(model, ref_dict, steps, flow_copy, context)  # warm-up
        _, whole = streamed(model, ref_dict, steps, flow_copy)
        first_rolling, rolling = streamed(model, ref_dict, steps, flow_copy, context)
        first_chunk_s3gen[label] = first_rolling
        print(f"  {label:<40} first {first_rolling:.2f} s; whole {whole:.2f} s / {rolling:.2f} s / "
              f"{one_pass[label]:.2f} s")

    print(f"{'end to end':<14} {'RTF':>6} {'first audio (s)':>16} {'streamed (s)':>13} "
          f"{'RTF, fastest standard S3Gen':>28} {'streamed (s)':>13} {'RTF, meanflow':>14} {'streamed (s)':>13} "
          f"{'RTF, meanflow ' + meanflow_fastest_label:>32} {'streamed (s)':>13}   (T3 + S3Gen, {audio_seconds:.1f} s "
          f"of audio; first: upstream's S3Gen, {default_steps} CFM steps; streamed: first audio with a first chunk "
          f"of {first_chunk} tokens)")
    candidates = {}  # (T3 mode, S3Gen settings) -> (end-to-end seconds, first streamed audio)
    for name, rate, _, _, _, prefill in rows:
        t3_seconds = prefill + (n - 1) / rate
        first_tokens = prefill + (first_chunk - 1) / rate
        cells = []
        for label, audio in one_pass.items():
            candidates[(name, label)] = (t3_seconds + audio, first_tokens + first_chunk_s3gen[label])
            cells.append(candidates[(name, label)])
        (total, first), rest = cells[0], cells[1:]
        line = f"{name:<14} {total / audio_seconds:>6.2f} {total:>16.2f} {first:>13.2f}"
        for (total, first), width in zip(rest, (28, 14, 32)):
            line += f" {total / audio_seconds:>{width}.2f} {first:>13.2f}"
        print(line)
    best_batched = max(batched, key=batched.get)
    per_second = TOKENS_PER_SECOND / batched[best_batched]
    print(f"{args.batch} sentences together ({best_batched}): RTF {per_second + whole_audio / audio_seconds:.2f}, "
          f"{per_second + fastest_audio / audio_seconds:.2f} with the fastest S3Gen settings (T3 "
          f"{per_second:.2f} s per second of audio)")
    best = max(results, key=results.get)
    print(f"best mode {best}: T3 decode {results[best]:.1f} tokens/s, {results[best] / upstream_rate:.2f}x upstream "
          f"for one sentence; {best_batched} with {args.batch} sentences together: "
          f"{batched[best_batched] / upstream_rate:.2f}x upstream's throughput")
    upstream_rtf = candidates[("upstream", f"{default_steps} CFM steps")][0] / audio_seconds
    (mode, settings), (seconds, first_audio) = min(candidates.items(), key=lambda item: item[1][0])
    print(f"end-to-end RTF {seconds / audio_seconds:.2f} (upstream {upstream_rtf:.2f}, "
          f"{upstream_rtf * audio_seconds / seconds:.1f}x faster): T3 {mode}, S3Gen {settings}; first streamed audio "
          f"{first_audio:.2f} s")


if __name__ == "__main__":
    main()
