"""Push a merged model, adapters or a prepared dataset to the Hugging Face Hub, with its card.

    python training/push_to_hub.py --repo_id USER/chatterbox-es-latam --what merged --path runs/demo/merged \
        --results runs/demo/eval/results.json
    python training/push_to_hub.py --repo_id USER/chatterbox-es-latam-lora --what adapter --path runs/demo/checkpoints/final
    python training/push_to_hub.py --repo_id USER/latam-speech --what dataset --path runs/demo/data

Creates the repo if it is missing (--private to keep it private) and uploads in one commit, checkpoints and
training state left out. The card (model card, adapter card or dataset card from the package's hub/templates/) carries the Hub
metadata, and for models a model-index filled from the evaluation's results.json (--results). Needs a token with
write access (`hf auth login` or HF_TOKEN); if the push fails, the error says why and the local files stay as
they are.
"""

from __future__ import annotations

import argparse
import logging
import sys

from chatterbox_latam.hub.push import HubError, push_model, push_prepared_dataset


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo_id", required=True, help="Hub repo to push to (USER/NAME or ORG/NAME).")
    parser.add_argument("--what", required=True, choices=["adapter", "merged", "dataset"], help="What --path holds.")
    parser.add_argument("--path", required=True, help="Adapter folder, merged model folder or prepared dataset folder.")
    parser.add_argument("--private", action="store_true", help="Create the repo private.")
    parser.add_argument("--results", default=None, help="The evaluation's results.json, for the card's model-index.")
    parser.add_argument("--base_model_id", default=None,
                        help="Hub id of the base model for the card (default: the one the adapter names).")
    parser.add_argument("--dataset_id", default=None, help="Hub id of the training dataset for the card.")
    parser.add_argument("--license", default="mit", help="Licence id for the card (upstream Chatterbox is MIT).")
    args = parser.parse_args(argv)
    try:
        if args.what == "dataset":
            url = push_prepared_dataset(args.path, args.repo_id, private=args.private)
        else:
            url = push_model(args.path, args.repo_id, private=args.private, results_path=args.results,
                             base_model_id=args.base_model_id, dataset_id=args.dataset_id, license=args.license,
                             expected_kind=args.what)
    except HubError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"pushed {args.path} to {url}")


if __name__ == "__main__":
    main()
