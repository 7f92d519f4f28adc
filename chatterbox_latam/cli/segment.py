"""Long recordings (podcasts, audiobooks, interviews, a read script) -> clips with transcripts in the folder layout.

    chatterbox-latam segment --input DIR_OR_FILES --output_dir DIR \
        [--transcripts DIR | --script FILE] [--language es] [--accent mx] [--speakers one|per-file|diarize] \
        [--asr_model openai/whisper-large-v3] [--min_seconds 3] [--max_seconds 15] [--config RECIPE]

Writes audio/<speaker>/*.wav, metadata.csv, rejected.jsonl (every stretch left out, with its reason) and
summary.md to --output_dir; `chatterbox-latam prepare --input DIR --format folder` (or `data.extra_inputs`) takes it from
there. A recipe's `segmentation:` section gives the defaults. See chatterbox_latam.data.recordings.
"""

from __future__ import annotations

import logging
import sys

from ..data.config import SegmentConfig
from ..data.recordings import REJECTED_NAME, segment_recordings, summary_table
from ..data.transcribe import ModelUnavailable
from ..parser import parse_recipe


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (config,) = parse_recipe({"segmentation": SegmentConfig}, argv, description=__doc__)
    if not config.input:
        sys.exit("no input: pass --input FILES_OR_FOLDERS (or set segmentation.input in the recipe).")
    try:
        summary = segment_recordings(config)
    except (ModelUnavailable, FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(summary_table(summary))
    print(f"clips: {config.output_dir}/metadata.csv")
    print(f"left out, with reasons: {config.output_dir}/{REJECTED_NAME}")


if __name__ == "__main__":
    main()
