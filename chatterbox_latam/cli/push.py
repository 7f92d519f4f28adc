"""Push a merged model, adapters or a prepared dataset to the Hugging Face Hub, with its card.

    chatterbox-latam push --repo_id USER/chatterbox-es-latam --what merged --path runs/demo/merged \
        --results runs/demo/eval/results.json
    chatterbox-latam push --repo_id USER/chatterbox-es-latam-lora --what adapter --path runs/demo/checkpoints/final
    chatterbox-latam push --repo_id USER/latam-speech --what dataset --path runs/demo/data

Creates the repo if it is missing (--private to keep it private) and uploads in one commit, checkpoints and
training state left out. The card (model card, adapter card or dataset card from hub_cards/, shipped in the package) carries the Hub
metadata, and for models a model-index filled from the evaluation's results.json (--results). Needs a token with
write access (`hf auth login` or HF_TOKEN); if the push fails, the error says why and the local files stay as
they are.
"""

from __future__ import annotations

import logging
import sys

from ..hub.config import PushConfig
from ..hub.push import HubError, push_model, push_prepared_dataset
from ..parser import parse_recipe


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (config,) = parse_recipe({"push": PushConfig}, argv, description=__doc__.splitlines()[0])
    try:
        if config.what == "dataset":
            url = push_prepared_dataset(config.path, config.repo_id, private=config.private)
        else:
            url = push_model(config.path, config.repo_id, private=config.private, results_path=config.results,
                             base_model_id=config.base_model_id, dataset_id=config.dataset_id,
                             license=config.license, expected_kind=config.what)
    except HubError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"pushed {config.path} to {url}")


if __name__ == "__main__":
    main()
