"""Human MOS: build a blinded listening test from an evaluation, then score the listeners' ratings.

    python training/mos_kit.py prepare --eval_dir runs/demo/eval --output_dir runs/demo/mos
    # send runs/demo/mos (without key.csv) to listeners; each opens index.html and returns ratings-NAME.csv
    python training/mos_kit.py score --key runs/demo/mos/key.csv --ratings ratings-*.csv
"""

from __future__ import annotations

import argparse
import json

from chatterbox_latam.evaluation.listening_test import (
    prepare_listening_test,
    score_listening_test,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    prepare = sub.add_parser("prepare", help="Blinded, shuffled samples and the rating page.")
    prepare.add_argument("--eval_dir", required=True, help="An output folder of training/evaluate.py.")
    prepare.add_argument("--output_dir", required=True, help="Where the listening test goes.")
    prepare.add_argument("--seed", type=int, default=0, help="Seed of the shuffle.")
    score = sub.add_parser("score", help="MOS per system with 95%% confidence intervals.")
    score.add_argument("--key", required=True, help="key.csv written by prepare.")
    score.add_argument("--ratings", nargs="+", required=True, help="ratings-*.csv files from the listeners.")
    score.add_argument("--output", default=None, help="Also write the result as JSON here.")
    args = parser.parse_args(argv)
    if args.action == "prepare":
        print(f"listening test: {prepare_listening_test(args.eval_dir, args.output_dir, args.seed)}")
        return
    summary = score_listening_test(args.key, args.ratings)
    print("| system | MOS | 95% CI | ratings | raters |\n|---|---|---|---|---|")
    for system, s in summary.items():
        print(f"| {system} | {s['mos']:.2f} | ± {s['ci95']:.2f} | {s['ratings']} | {s['raters']} |")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
