"""Keep a Hub copy of the newest checkpoint, and get it back on a fresh machine (Runpod, spot instances).

    python training/sync_checkpoints.py push  --repo_id USER/run --checkpoint_dir /workspace/checkpoints
    python training/sync_checkpoints.py watch --repo_id USER/run --checkpoint_dir /workspace/checkpoints --every 600
    python training/sync_checkpoints.py pull  --repo_id USER/run --checkpoint_dir /workspace/checkpoints

Only complete checkpoints are sent; `pull` does nothing when the folder already holds one.
"""

from __future__ import annotations

import argparse
import time

from chatterbox_latam.training.checkpoints import (
    pull_latest_checkpoint,
    push_latest_checkpoint,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["push", "watch", "pull"])
    parser.add_argument("--repo_id", required=True, help="Hub model repo holding last-checkpoint/ (USER/NAME).")
    parser.add_argument("--checkpoint_dir", required=True, help="The training run's checkpoint folder.")
    parser.add_argument("--every", type=float, default=600, help="watch: seconds between syncs.")
    parser.add_argument("--public", action="store_true", help="Create the repo public (default: private).")
    args = parser.parse_args(argv)
    if args.action == "pull":
        restored = pull_latest_checkpoint(args.repo_id, args.checkpoint_dir)
        print(f"restored {restored}" if restored else "nothing to restore")
        return
    while True:
        sent = push_latest_checkpoint(args.checkpoint_dir, args.repo_id, private=not args.public)
        print(f"synced {sent}" if sent else "up to date", flush=True)
        if args.action == "push":
            return
        time.sleep(args.every)


if __name__ == "__main__":
    main()
