"""Raw Latin-American Spanish recordings (or a Hub dataset) -> the prepared feature dataset.

    python training/prepare_data.py --config training/recipes/tiny_cpu.yaml \
        [--input PATH_OR_REPO] [--format seed|openslr|commonvoice|hub] [--output_dir DIR] [--push_to_hub REPO_ID]

Every recipe field can be overridden as `--field value`. See chatterbox_latam.prepare for what it writes.
"""

from __future__ import annotations

import logging

from chatterbox_latam.config import RECIPE_SECTIONS, parse_recipe
from chatterbox_latam.data.dataset import REPORT_NAME, summary_table
from chatterbox_latam.data.prepare import prepare_dataset

ALIASES = {"input": "input_path", "output_dir": "prepared_dir", "push_to_hub": "dataset_hub_id"}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_config, _, data_config, _, _ = parse_recipe(RECIPE_SECTIONS, argv, aliases=ALIASES, description=__doc__)
    result = prepare_dataset(model_config, data_config)
    print(summary_table(result.summary))
    print(f"prepared dataset: {result.dataset_dir}")
    print(f"rejected rows: {data_config.prepared_dir}/{REPORT_NAME}")
    if data_config.dataset_hub_id:
        from chatterbox_latam.hub.push import push_prepared_dataset

        url = push_prepared_dataset(data_config.prepared_dir, data_config.dataset_hub_id, private=data_config.private)
        print(f"pushed: {url}")


if __name__ == "__main__":
    main()
