"""Evaluate a checkpoint: WER/CER, speaker similarity, MOS proxy and RTF, against the base and the recordings.

    python training/evaluate.py --checkpoint runs/demo/checkpoints/final --test_data runs/demo/data \
        --output_dir runs/demo/eval [--metric wer|cer|speaker_sim|mos|rtf|all] [--compare_base] \
        [--compare ResembleAI/Chatterbox-Multilingual-es-mx-latam ...]

`--checkpoint`: an adapter folder, a merged model folder or a Hub repo id. `--test_data`: a prepared dataset
(its test split) or a folder in the seed's layout. Writes results.json, report.md and plots/ to --output_dir.
"""

from __future__ import annotations

import argparse
import logging

from chatterbox_latam.config import DEFAULT_ASR, DEFAULT_WAVLM_SV, METRICS, EvalConfig
from chatterbox_latam.evaluation.harness import evaluate_checkpoint
from chatterbox_latam.synthesis.precision import MODES
from chatterbox_latam.synthesis.tts import ALIGNMENT_CHOICES, parse_alignment
from chatterbox_latam.synthesis.vocoder import S3GEN_MODES
from chatterbox_latam.utils import default_device


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="Adapter folder, merged model folder or Hub repo id.")
    parser.add_argument("--test_data", required=True, help="Prepared dataset folder or seed-layout folder.")
    parser.add_argument("--output_dir", required=True, help="Where results.json, report.md and plots go.")
    parser.add_argument("--metric", nargs="+", default=["all"], choices=[*METRICS, "all"], help="What to measure.")
    parser.add_argument("--compare_base", action="store_true", help="Also evaluate the base model.")
    parser.add_argument("--base_model", default=None, help="Base for an adapter (default: its adapter.json).")
    parser.add_argument("--asr_model", default=DEFAULT_ASR, help="ASR checkpoint id or local folder for WER/CER.")
    parser.add_argument("--wavlm_model", default=DEFAULT_WAVLM_SV,
                        help="WavLM speaker-verification checkpoint for a second similarity ('' to skip).")
    parser.add_argument("--utmos_checkpoint", default=None,
                        help="Local utmos_state_dict.pt (default: from the Hub repo Blinorot/UTMOS-PyTorch).")
    parser.add_argument("--no_utmos", action="store_true", help="Skip UTMOS.")
    parser.add_argument("--max_samples", type=int, default=None, help="Evaluate at most this many sentences.")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed for synthesis.")
    parser.add_argument("--mode", default="fp32", choices=[*MODES, "auto"],
                        help="T3 precision for the fine-tuned model's synthesis (a fast one is scored beside fp32).")
    parser.add_argument("--s3gen_mode", default="fp32", choices=S3GEN_MODES, help="S3Gen flow precision.")
    parser.add_argument("--cfm_steps", type=int, default=None, help="S3Gen flow steps (default: upstream's 10).")
    parser.add_argument("--s3gen_prompt_seconds", type=float, default=None,
                        help="Seconds of the reference S3Gen continues from (default: all of it).")
    parser.add_argument("--alignment", default="auto", choices=sorted(ALIGNMENT_CHOICES),
                        help="Upstream's alignment heuristics (auto: as upstream for the model's generation). When "
                             "they run and the adapter changed T3's attention, the other setting is scored too.")
    parser.add_argument("--t3_model", default=None, choices=["v2", "v3"],
                        help="With ResembleAI/chatterbox as checkpoint or base: which of its T3 files.")
    parser.add_argument("--compare", nargs="+", default=[],
                        help="More models scored side by side: Hub repo ids or folders, e.g. "
                             "ResembleAI/Chatterbox-Multilingual-es-mx-latam ResembleAI/chatterbox:v3.")
    args = parser.parse_args(argv)
    results = evaluate_checkpoint(EvalConfig(
        checkpoint=args.checkpoint, test_data=args.test_data, output_dir=args.output_dir, metrics=args.metric,
        compare_base=args.compare_base, base_model=args.base_model, asr_model=args.asr_model,
        wavlm_model=args.wavlm_model or None, utmos=not args.no_utmos, utmos_checkpoint=args.utmos_checkpoint,
        max_samples=args.max_samples, device=args.device, seed=args.seed, mode=args.mode,
        s3gen_mode=args.s3gen_mode, cfm_steps=args.cfm_steps, s3gen_prompt_seconds=args.s3gen_prompt_seconds,
        alignment=parse_alignment(args.alignment), t3_model=args.t3_model, compare=args.compare,
    ))
    for system, values in results["systems"].items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in values["aggregate"].items() if k != "n")
        print(f"{system}: {shown}")
    for name, message in results["skipped"].items():
        print(f"{name} skipped: {message}")
    print(f"report: {args.output_dir}/report.md")


if __name__ == "__main__":
    main()
