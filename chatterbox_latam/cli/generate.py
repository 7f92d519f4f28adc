"""Batch inference: one WAV per line of a text file, in a cloned voice.

    chatterbox-latam generate --model runs/demo/merged --texts textos.txt --reference voz.wav --output_dir out/
    chatterbox-latam generate --model USER/chatterbox-es-latam-lora --texts textos.txt --reference voz.wav \
        --output_dir out/ --accent ar --seed 0 --mode auto --lines_together 8 --s3gen meanflow

`--model`: a merged model folder, an adapter folder (or per-accent adapters) or a Hub repo id. Blank lines are
skipped; `out/audio_NNNN.wav` is line NNNN; files already there are kept, so a re-run only does what is missing.
`out/manifest.csv` lists every line with its file, duration and status. `--lines_together` lines are decoded
at once (their WAVs are written when the group is done).
"""

from __future__ import annotations

import logging
import sys

from ..parser import parse_recipe
from ..synthesis.batch_generate import MANIFEST_NAME, batch_generate
from ..synthesis.config import GenerateConfig, GenerationSettings
from ..synthesis.tts import ChatterboxLatamTTS


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (config,) = parse_recipe({"generation": GenerateConfig}, argv, description=__doc__.splitlines()[0])
    model = ChatterboxLatamTTS.from_pretrained(config.model, device=config.device, mode=config.mode,
                                               t3_model=config.t3_model)
    model.set_s3gen(config.s3gen_mode, config.cfm_steps, config.s3gen_prompt_seconds, config.s3gen,
                    config.meanflow_model)
    model.batch_size = max(1, config.lines_together)
    rows = batch_generate(model, config.texts, config.reference, config.output_dir, GenerationSettings.of(config),
                          lines_together=config.lines_together)
    counts = {status: sum(r.status == status for r in rows) for status in ("written", "existing", "failed")}
    print(f"{counts['written']} written, {counts['existing']} already there, {counts['failed']} failed; "
          f"manifest: {config.output_dir}/{MANIFEST_NAME}")
    sys.exit(1 if counts["failed"] and not (counts["written"] or counts["existing"]) else 0)


if __name__ == "__main__":
    main()
