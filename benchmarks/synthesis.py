"""Synthesis speed: upstream `T3.inference` against the fast decoder's modes, on the same weights and inputs.

    python benchmarks/synthesis.py [--full-size] [--device cpu|cuda] [--tokens 40]

Builds a random-init T3 (upstream's full size with --full-size: 30 layers, 536M parameters; else the tiny one)
and S3Gen from the upstream classes, then, for upstream and each mode (fp32, bf16, int8 on CPU): T3 decode tokens/s
(decoding only: the prompt's prefill is timed on its own) and its ratio to upstream, whether fp32 gives upstream's
tokens, teacher-forced agreement with fp32, S3Gen flow
and vocoder time, end-to-end real-time factor and time to first audio (the first sentence's audio, which is when
streaming playback starts). Random weights never emit the stop token, so every run decodes exactly --tokens.
The last line is the best mode's T3 decode ratio to upstream.
"""

from __future__ import annotations

import argparse
import time

import torch

from chatterbox_latam.fast_t3 import MODES, SamplingSettings, fast_decode, t3_for_mode, teacher_forced_agreement
from chatterbox_latam.modeling import build_s3gen, build_t3
from chatterbox_latam.tiny_model import TINY_CONFIG

TOKENS_PER_SECOND_OF_AUDIO = 25


def _inputs(t3, device):
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    g = torch.Generator().manual_seed(1)
    text = torch.randint(1, 600, (1, 60), generator=g)
    text[0, 0], text[0, -1] = t3.hp.start_text_token, t3.hp.stop_text_token
    emb = torch.randn(1, 256, generator=g)
    prompt = torch.randint(0, 6561, (1, 150), generator=g)

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


def _reset_attention(t3):
    # Upstream's alignment analyzer leaves the backbone in eager attention with attention outputs on.
    t3.tfmr.config._attn_implementation = "sdpa"
    t3.tfmr.config.output_attentions = False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="Upstream's sizes (the figures README quotes).")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tokens", type=int, default=40, help="Speech tokens per run (25 per second of audio).")
    parser.add_argument("--cfm_steps", type=int, nargs="+", default=[10, 5], help="S3Gen CFM steps to time.")
    parser.add_argument("--prompt_seconds", type=int, nargs="+", default=[6, 10, 3],
                        help="Reference lengths to time S3Gen's flow with (the first is used for the rest).")
    args = parser.parse_args(argv)
    device, n = args.device, args.tokens
    config = {} if args.full_size else TINY_CONFIG
    torch.manual_seed(0)
    # Upstream's multilingual inference hooks layers 9-13: the tiny (2-layer) T3 runs at the English configuration.
    t3 = build_t3(config, multilingual=args.full_size).to(device).eval()
    text, cond = _inputs(t3, device)
    settings = SamplingSettings()
    print(f"T3 {'full size' if args.full_size else 'tiny'}: {sum(p.numel() for p in t3.parameters()) / 1e6:.0f}M "
          f"parameters, {t3.cfg.num_hidden_layers} layers; device {device}, {torch.get_num_threads()} threads; "
          f"{n} tokens, CFG batch 2")

    def upstream(tokens=n):
        torch.manual_seed(0)
        result = t3.inference(t3_cond=cond(), text_tokens=torch.cat([text, text]), max_new_tokens=tokens,
                              temperature=settings.temperature, cfg_weight=settings.cfg_weight,
                              repetition_penalty=settings.repetition_penalty, min_p=settings.min_p,
                              top_p=settings.top_p)
        _reset_attention(t3)
        return result

    def rates(run) -> tuple[torch.Tensor, float, float]:
        """(tokens, decode tokens/s, prefill seconds): one run of 1 token and one of n, so the prompt's prefill
        (the conditioning, text and start token through all layers) is not counted as decoding."""
        run(2)  # warm-up (kernels, allocator)
        _, first = _timed(lambda: run(1), device)
        tokens, total = _timed(lambda: run(n), device)
        return tokens, (n - 1) / max(total - first, 1e-9), first

    upstream_tokens, upstream_rate, upstream_prefill = rates(upstream)
    rows = [("upstream", upstream_rate, 1.0, "-", "-", upstream_prefill)]

    modes = [m for m in MODES if not (m.startswith("int8") and device != "cpu")]
    reference_tokens = None
    results = {}
    for mode in modes:
        fast = t3_for_mode(t3, mode)

        def decode(tokens=n, alignment=False, model=fast):
            torch.manual_seed(0)
            return fast_decode(model, cond(), text, tokens, settings, alignment=alignment)

        tokens, rate, prefill = rates(decode)
        identical = "-"
        if mode == "fp32":
            reference_tokens = tokens
            # exact mode: upstream's alignment heuristics too, as upstream runs them for the multilingual model
            exact = decode(alignment=t3.hp.is_multilingual and t3.cfg.num_hidden_layers >= 14)
            identical = "yes" if torch.equal(exact, upstream_tokens) else "NO"
            agreement = 1.0
        else:
            agreement = teacher_forced_agreement(t3, fast, cond(), text, reference_tokens)
        results[mode] = rate
        rows.append((mode, rate, rate / upstream_rate, identical, f"{agreement:.3f}", prefill))
        del fast

    print(f"{'T3 decode':<10} {'tokens/s':>9} {'x upstream':>11} {'same tokens':>12} {'teacher-forced':>15} "
          f"{'prefill (s)':>12}")
    for name, rate, ratio, identical, agreement, prefill in rows:
        print(f"{name:<10} {rate:>9.1f} {ratio:>10.2f}x {identical:>12} {agreement:>15} {prefill:>12.2f}")

    # S3Gen: flow (CFM) and vocoder timed on their own, for the same tokens.
    s3gen = build_s3gen(config).to(device).eval()
    speech = upstream_tokens[0][upstream_tokens[0] < 6561].to(device)
    audio_seconds = len(speech) / TOKENS_PER_SECOND_OF_AUDIO

    def reference(seconds: int) -> dict:
        wav = torch.randn(24_000 * seconds, generator=torch.Generator().manual_seed(3)) * 0.1
        return s3gen.embed_ref(wav, 24_000, device=device)

    ref = reference(args.prompt_seconds[0])
    flow_times = {}
    for steps in args.cfm_steps:
        s3gen.flow_inference(speech, ref_dict=ref, n_cfm_timesteps=steps, finalize=True)  # warm-up
        mel, flow_times[steps] = _timed(lambda: s3gen.flow_inference(speech, ref_dict=ref, n_cfm_timesteps=steps,
                                                                     finalize=True), device)
    _, vocoder_time = _timed(lambda: s3gen.hift_inference(mel), device)
    print(f"S3Gen for {audio_seconds:.1f} s of audio ({args.prompt_seconds[0]} s prompt): "
          + ", ".join(f"flow {t:.2f} s ({s} CFM steps)" for s, t in flow_times.items())
          + f", vocoder {vocoder_time:.2f} s")
    by_prompt = []
    for seconds in args.prompt_seconds[1:]:
        other = reference(seconds)
        _, flow = _timed(lambda: s3gen.flow_inference(speech, ref_dict=other, n_cfm_timesteps=args.cfm_steps[0],
                                                      finalize=True), device)
        by_prompt.append(f"{seconds} s prompt {flow:.2f} s")
    if by_prompt:
        print(f"S3Gen flow ({args.cfm_steps[0]} CFM steps) against the reference prompt's length: "
              + ", ".join(by_prompt))

    default_steps = args.cfm_steps[0]
    print(f"{'end to end':<10} {'RTF':>6} {'first audio (s)':>16}   (T3 + S3Gen with {default_steps} CFM steps, "
          f"{audio_seconds:.1f} s of audio)")
    for name, rate, _, _, _, prefill in rows:
        total = prefill + (n - 1) / rate + flow_times[default_steps] + vocoder_time
        print(f"{name:<10} {total / audio_seconds:>6.2f} {total:>16.2f}")
    best = max(results, key=results.get)
    print(f"best mode {best}: T3 decode {results[best] / upstream_rate:.2f}x upstream")


if __name__ == "__main__":
    main()
