"""Train LoRA adapters for Chatterbox on a prepared Latin-American Spanish dataset.

    chatterbox-latam train --config training/recipes/tiny_cpu.yaml [--resume latest|CHECKPOINT]
    chatterbox-latam train --config RECIPE --num_processes 2 [--accelerate_config accelerate_configs/multi_gpu.yaml]
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml training/run.py --config RECIPE
    torchrun --nproc_per_node 2 training/run.py --config RECIPE

One process runs here; `--num_processes N` (or `--accelerate_config FILE`) prints the `accelerate launch` command
for N processes and hands over to it. Every recipe field can be overridden as `--field value`, every
`transformers.TrainingArguments` field among them (`--max_steps 20 --save_steps 5 --optim adafactor`).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from ..parser import parse_recipe
from ..training.config import RECIPE_SECTIONS, Recipe

INTERRUPTED = 143
"""Exit status of a run stopped by SIGTERM after writing a complete checkpoint (128 + SIGTERM, as the shell's)."""


def launch_command(argv: list[str], num_processes: int | None, config_file: str | None) -> list[str]:
    """The `accelerate launch` command that runs this one in `num_processes` processes."""
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file:
        command += ["--config_file", config_file]
    if num_processes:
        command += ["--num_processes", str(num_processes)]
    return [*command, "-m", "chatterbox_latam.cli.train", *argv]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    launcher = argparse.ArgumentParser(add_help=False)
    launcher.add_argument("--num_processes", type=int, default=None)
    launcher.add_argument("--accelerate_config", default=None)
    handover, rest = launcher.parse_known_args(argv)
    if handover.num_processes is not None and handover.num_processes < 1:
        raise SystemExit(f"--num_processes {handover.num_processes}: give 1 or more.")
    if handover.num_processes or handover.accelerate_config:
        command = launch_command(rest, handover.num_processes, handover.accelerate_config)
        print("launching:", shlex.join(command), flush=True)
        os.execv(command[0], command)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, rest, description=__doc__,
                                  epilog_extra="--num_processes N, --accelerate_config FILE: run in N processes "
                                               "through accelerate launch."))
    from ..training.run import TrainingInterrupted, run_finetune

    try:
        for result in run_finetune(recipe):
            print(result.describe())
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        sys.exit(INTERRUPTED)


if __name__ == "__main__":
    main()
