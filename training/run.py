"""Train LoRA adapters for Chatterbox on a prepared Latin-American Spanish dataset.

    accelerate launch --config_file accelerate_configs/cpu.yaml training/run.py --config training/recipes/tiny_cpu.yaml
    torchrun --nproc_per_node 2 training/run.py --config RECIPE
    python training/run.py --config RECIPE [--resume latest|CHECKPOINT] [--output_dir DIR] [--wandb_project NAME]

Every recipe field can be overridden as `--field value` (e.g. `--max_steps 20 --save_every 5`).
"""

from __future__ import annotations

import logging
import sys

from chatterbox_latam.config import RECIPE_SECTIONS, Recipe, parse_recipe
from chatterbox_latam.training.run import TrainingInterrupted, run_finetune

ALIASES = {"output_dir": "checkpoint_dir"}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = Recipe(*parse_recipe(RECIPE_SECTIONS, argv, aliases=ALIASES, description=__doc__))
    try:
        for result in run_finetune(recipe):
            print(result.describe())
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        sys.exit(143)


if __name__ == "__main__":
    main()
