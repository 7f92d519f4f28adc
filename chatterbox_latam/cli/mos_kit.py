"""Human MOS: build a blinded listening test from an evaluation, then score the listeners' ratings.

    chatterbox-latam mos-kit prepare --eval_dir runs/demo/eval --output_dir runs/demo/mos
    # send runs/demo/mos (without key.csv) to listeners; each opens index.html and returns ratings-NAME.csv
    chatterbox-latam mos-kit score --key runs/demo/mos/key.csv --ratings ratings-*.csv
"""

from __future__ import annotations

import json

from ..evaluation.config import ListeningTestConfig, RatingsConfig
from ..parser import parse_command
from ..evaluation.listening_test import (
    prepare_listening_test,
    score_listening_test,
)


def main(argv: list[str] | None = None) -> None:
    action, (config,) = parse_command({"prepare": {"listening_test": ListeningTestConfig},
                                       "score": {"ratings": RatingsConfig}}, argv,
                                      description=__doc__.splitlines()[0])
    if action == "prepare":
        print(f"listening test: {prepare_listening_test(config.eval_dir, config.output_dir, config.seed)}")
        return
    summary = score_listening_test(config.key, config.ratings)
    print("| system | MOS | 95% CI | ratings | raters |\n|---|---|---|---|---|")
    for system, s in summary.items():
        print(f"| {system} | {s['mos']:.2f} | ± {s['ci95']:.2f} | {s['ratings']} | {s['raters']} |")
    if config.output:
        with open(config.output, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
