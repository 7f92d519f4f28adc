"""The whole job, offline, on the tiny model and a generated Spanish corpus: what `make demo` runs.

    chatterbox-latam demo [--output_dir runs/demo] [--accelerate_config accelerate_configs/cpu.yaml]

Builds the tiny random-init checkpoint (upstream's classes, the real file layout) and an espeak-ng corpus with one
long read take, cuts the take into clips, prepares the dataset, trains LoRA on T3 and S3Gen (through `accelerate
launch` when given an accelerate config), evaluates against the base, merges with a default voice and speaks
`--texts`. Every step skips what a complete earlier run left, so a rerun picks up where a stopped one ended.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

RECIPE = "training/recipes/tiny_cpu.yaml"
TEXTS = "examples/textos.txt"


def steps(out: Path, recipe: str, texts: str) -> list[tuple[str, list[str]]]:
    """(subcommand, arguments) of each step; the recipe's demo paths are overridden by `out`'s."""
    corpus, data, checkpoints = out / "corpus", out / "data", out / "checkpoints"
    paths = ["--base_model", str(out / "tiny_model"), "--input_path", str(corpus), "--prepared_dir", str(data)]
    return [
        ("segment", ["--config", recipe, "--input", str(out / "recordings" / "recording.wav"),
                     "--script", str(out / "recordings" / "script.txt"), "--output_dir", str(out / "segmented")]),
        ("prepare", ["--config", recipe, *paths, "--extra_inputs", str(out / "segmented")]),
        ("train", ["--config", recipe, *paths, "--output_dir", str(checkpoints), "--resume", "latest"]),
        # The tiny T3, trained for a minute, rarely says its stop token: each sentence is capped at 150 tokens (6 s).
        ("evaluate", ["--checkpoint", str(checkpoints / "final"), "--test_data", str(data), "--output_dir",
                      str(out / "eval"), "--compare_base", "--s3gen", "meanflow", "--targets_sentences", "2",
                      "--max_new_tokens", "150"]),
        ("merge", ["--adapter", str(checkpoints / "final"), "--output_dir", str(out / "merged"),
                   "--default_voice", str(corpus / "audio" / "speaker_001" / "audio_001.wav")]),
        ("generate", ["--model", str(out / "merged"), "--texts", texts, "--reference",
                      str(corpus / "audio" / "speaker_003" / "audio_002.wav"), "--output_dir", str(out / "generated"),
                      "--seed", "0"]),
    ]


def main(argv: list[str] | None = None) -> None:
    import importlib

    from . import COMMANDS
    from .train import launch_command

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/demo", help="Where every step writes.")
    parser.add_argument("--config", default=RECIPE, help="The tiny model's recipe.")
    parser.add_argument("--texts", default=TEXTS, help="Lines the merged model speaks at the end.")
    parser.add_argument("--accelerate_config", default=None,
                        help="Train through `accelerate launch --config_file FILE` (default: in this process).")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    from ..testing import espeak_corpus, tiny_model

    print("== the tiny checkpoint and the espeak-ng corpus", flush=True)
    tiny_model.main(["--output_dir", str(out / "tiny_model")])
    espeak_corpus.main(["--output_dir", str(out / "corpus"), "--long_recording", str(out / "recordings")])
    for name, arguments in steps(out, args.config, args.texts):
        print(f"== chatterbox-latam {name} {' '.join(arguments)}", flush=True)
        if name == "train" and args.accelerate_config:
            subprocess.run(launch_command(arguments, None, args.accelerate_config), check=True)
            continue
        result = importlib.import_module(f"{__package__}.{COMMANDS[name][0]}").main(arguments)
        if isinstance(result, int) and result:
            sys.exit(result)
    print(f"demo: everything is under {out}/ (report: {out}/eval/report.md, speech: {out}/generated/)")


if __name__ == "__main__":
    main()
