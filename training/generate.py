"""Batch inference: one WAV per line of a text file, in a cloned voice.

    python training/generate.py --model runs/demo/merged --texts textos.txt --reference voz.wav --output_dir out/
    python training/generate.py --model USER/chatterbox-es-latam-lora --texts textos.txt --reference voz.wav \
        --output_dir out/ --accent ar --seed 0 --mode auto --lines_together 8

`--model`: a merged model folder, an adapter folder (or per-accent adapters) or a Hub repo id. Blank lines are
skipped; `out/audio_NNNN.wav` is line NNNN; files already there are kept, so a re-run only does what is missing.
`out/manifest.csv` lists every line with its file, duration and status. `--lines_together` lines are decoded
at once (their WAVs are written when the group is done).
"""

from __future__ import annotations

import argparse
import logging
import sys

from chatterbox_latam.synthesis.batch_generate import MANIFEST_NAME, batch_generate
from chatterbox_latam.synthesis.precision import MODES
from chatterbox_latam.synthesis.tts import (
    ALIGNMENT_CHOICES,
    ChatterboxLatamTTS,
    parse_alignment,
)
from chatterbox_latam.synthesis.vocoder import S3GEN_MODES
from chatterbox_latam.utils import default_device


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Merged model or adapter folder, or Hub repo id.")
    parser.add_argument("--texts", required=True, help="UTF-8 text file, one utterance per line.")
    parser.add_argument("--reference", default=None, help="WAV of the voice to clone (default: the model's voice).")
    parser.add_argument("--output_dir", required=True, help="Where the WAVs and manifest.csv go.")
    parser.add_argument("--accent", default=None, help="Accent adapter / normalisation (mx, ar, co, cl, pe).")
    parser.add_argument("--exaggeration", type=float, default=0.5, help="Expressiveness (0-1+).")
    parser.add_argument("--cfg_weight", type=float, default=0.5, help="Classifier-free guidance weight.")
    parser.add_argument("--temperature", type=float, default=0.8, help="Sampling temperature.")
    parser.add_argument("--seed", type=int, default=None, help="Seed, for repeatable outputs.")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--mode", default="fp32", choices=[*MODES, "auto"],
                        help="T3 precision: fp32 (exact), bf16, int8 / int8-wo / int4-wo (CPU), or auto (the fastest "
                             "that agrees with fp32 on this model; see README, Synthesis speed).")
    parser.add_argument("--lines_together", type=int, default=1,
                        help="Lines decoded at once (one T3 pass per step for all their sentences): more is faster in "
                             "total, without upstream's alignment heuristics (they follow one utterance).")
    parser.add_argument("--cfm_steps", type=int, default=None, help="S3Gen flow steps (default 10; fewer is faster).")
    parser.add_argument("--s3gen_mode", default="fp32", choices=S3GEN_MODES,
                        help="S3Gen flow precision (bf16: about 2x faster on CPUs with bf16 units; check with evaluate.py).")
    parser.add_argument("--s3gen_prompt_seconds", type=float, default=None,
                        help="Seconds of the reference S3Gen continues from (default: all, up to 10; less is faster).")
    parser.add_argument("--alignment", default="auto", choices=sorted(ALIGNMENT_CHOICES),
                        help="Upstream's alignment heuristics: auto (on for v2 multilingual, off for v3 and the packs, "
                             "as upstream), on or off.")
    parser.add_argument("--t3_model", default=None, choices=["v2", "v3"],
                        help="With ResembleAI/chatterbox (or a folder of it) as --model: which of its T3 files.")
    args = parser.parse_args(argv)
    model = ChatterboxLatamTTS.from_pretrained(args.model, device=args.device, mode=args.mode, t3_model=args.t3_model)
    model.set_s3gen(args.s3gen_mode, args.cfm_steps, args.s3gen_prompt_seconds)
    model.alignment = parse_alignment(args.alignment)
    model.batch_size = max(1, args.lines_together)
    rows = batch_generate(model, args.texts, args.reference, args.output_dir, lines_together=args.lines_together,
                          accent=args.accent,
                          exaggeration=args.exaggeration, cfg_weight=args.cfg_weight, temperature=args.temperature,
                          seed=args.seed)
    counts = {status: sum(r.status == status for r in rows) for status in ("written", "existing", "failed")}
    print(f"{counts['written']} written, {counts['existing']} already there, {counts['failed']} failed; "
          f"manifest: {args.output_dir}/{MANIFEST_NAME}")
    sys.exit(1 if counts["failed"] and not (counts["written"] or counts["existing"]) else 0)


if __name__ == "__main__":
    main()
