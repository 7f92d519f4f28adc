"""The `chatterbox-latam` command: one subcommand per stage a user runs, in the order the data flows.

    chatterbox-latam --help
    chatterbox-latam prepare --config training/recipes/es_latam_lora.yaml
    chatterbox-latam train --config training/recipes/es_latam_lora.yaml --num_processes 2
    chatterbox-latam COMMAND --help        (the command's options, each with its help text)

Each subcommand is a module here with a `main(argv)`; the scripts in training/ call the same functions, so
`accelerate launch training/run.py ...` and `chatterbox-latam train ...` are one program. A subcommand's module is
imported only when it runs, so `--help` answers at once.
"""

from __future__ import annotations

import difflib
import importlib
import sys

COMMANDS = {
    "segment": ("segment", "long recordings (podcasts, audiobooks, interviews, a read script) -> clips"),
    "prepare": ("prepare", "recordings or a Hub dataset -> the prepared feature dataset"),
    "train": ("train", "LoRA adapters on the prepared dataset (one process, or several through accelerate)"),
    "evaluate": ("evaluate", "WER, speaker similarity, MOS, accent and RTF of a checkpoint, against its base"),
    "merge": ("merge", "adapters + base -> a standalone model folder (and a GGUF for llama.cpp)"),
    "push": ("push", "a merged model, adapters or a prepared dataset -> the Hub, with its card"),
    "generate": ("generate", "one WAV per line of a text file, in a cloned voice"),
    "mos-kit": ("mos_kit", "a blinded listening test from an evaluation, and its MOS"),
    "sync": ("sync", "the newest checkpoint to and from the Hub (Runpod, spot instances)"),
    "check-real": ("check_real", "do training and inference read the real ResembleAI weights right?"),
    "demo": ("demo", "the whole job, offline, on the tiny model and a generated Spanish corpus"),
}
"""`{subcommand: (module in chatterbox_latam.cli, what it does)}`."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    return ("usage: chatterbox-latam COMMAND [--help] [options]\n\n"
            "Chatterbox TTS adapted to Latin-American Spanish with LoRA.\n\ncommands:\n" + "\n".join(lines) +
            "\n\n`chatterbox-latam COMMAND --help` lists the command's options.")


def main(argv: list[str] | None = None) -> None:
    """Runs `chatterbox-latam COMMAND ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SystemExit(f"chatterbox-latam: {name!r} is no command.{hint}\n\n{usage()}")
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    sys.argv[0] = f"chatterbox-latam {name}"  # argparse's prog in each command's --help
    result = module.main(rest)
    if isinstance(result, int):
        raise SystemExit(result)


if __name__ == "__main__":
    main()
