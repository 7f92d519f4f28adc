"""Raw Latin-American Spanish recordings (or a Hub dataset) -> the prepared feature dataset.

    chatterbox-latam prepare --config training/recipes/tiny_cpu.yaml \
        [--input PATH_OR_REPO] [--format folder|openslr|commonvoice|hub] [--output_dir DIR] [--push_to_hub REPO_ID]

Every recipe field can be overridden as `--field value`. See chatterbox_latam.prepare for what it writes.
"""

from __future__ import annotations

import logging

from ..data.config import DataConfig
from ..data.dataset import REPORT_NAME, summary_table
from ..data.prepare import prepare_dataset
from ..models.config import ModelConfig
from ..parser import parse_recipe

ALIASES = {"input": "input_path", "output_dir": "prepared_dir", "push_to_hub": "dataset_hub_id"}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_config, data_config = parse_recipe({"model": ModelConfig, "data": DataConfig}, argv, aliases=ALIASES,
                                             description=__doc__)
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
