"""Evaluate a checkpoint: WER/CER, speaker similarity, MOS proxy, accent and RTF, against the base and the recordings.

    chatterbox-latam evaluate --checkpoint runs/demo/checkpoints/final --test_data runs/demo/data \
        --output_dir runs/demo/eval [--metric wer|cer|speaker_sim|mos|accent|rtf|all] [--compare_base] \
        [--compare ResembleAI/Chatterbox-Multilingual-es-mx-latam ...] [--targets] [--cfg_weight 0] \
        [--mode llamacpp-q4_0] [--s3gen meanflow]
    chatterbox-latam evaluate --checkpoint runs/demo/checkpoints/final --test_data runs/demo/data \
        --output_dir runs/demo/seed-tts-eval --protocol seed-tts-eval --sv_checkpoint wavlm_large_finetune.pth

`--checkpoint`: an adapter folder, a merged model folder or a Hub repo id. `--test_data`: a prepared dataset
(its test split) or a folder in the folder layout. Writes results.json, report.md and plots/ to --output_dir and
prints the accent table; `--accent_model` names another accent classifier than CommonAccent's. `--targets` (on with
every metric) adds the project's targets: expressivity control kept, cloning from a few seconds. `--protocol
seed-tts-eval` speaks the shipped Spanish list with held-out speakers and scores it as that protocol does.
"""

from __future__ import annotations

import logging

from ..evaluation.accent import accent_report
from ..evaluation.config import EvalConfig
from ..evaluation.harness import evaluate_checkpoint
from ..evaluation.testset import EvaluationDataError
from ..parser import parse_recipe


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (config,) = parse_recipe({"evaluation": EvalConfig}, argv, description=__doc__.splitlines()[0])
    try:
        results = evaluate_checkpoint(config)
    except EvaluationDataError as error:  # what to change is in the message: no traceback
        raise SystemExit(f"chatterbox-latam evaluate: {error}") from None
    for system, values in results["systems"].items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in values["aggregate"].items() if k != "n")
        print(f"{system}: {shown}")
    for line in accent_report(results):
        print(line)
    for name, message in results["skipped"].items():
        print(f"{name} skipped: {message}")
    print(f"report: {config.output_dir}/report.md")


if __name__ == "__main__":
    main()
