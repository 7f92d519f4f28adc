"""Keep a Hub copy of the newest checkpoint, and get it back on a fresh machine (Runpod, spot instances).

    chatterbox-latam sync push  --repo_id USER/run --checkpoint_dir /workspace/checkpoints
    chatterbox-latam sync watch --repo_id USER/run --checkpoint_dir /workspace/checkpoints --every 600
    chatterbox-latam sync pull  --repo_id USER/run --checkpoint_dir /workspace/checkpoints

Only complete checkpoints are sent; `pull` does nothing when the folder already holds one.
"""

from __future__ import annotations

import time

from ..hub.config import SyncConfig
from ..parser import parse_command
from ..training.checkpoints import (
    pull_latest_checkpoint,
    push_latest_checkpoint,
)


def main(argv: list[str] | None = None) -> None:
    sections = {"sync": SyncConfig}
    action, (config,) = parse_command({"push": sections, "watch": sections, "pull": sections}, argv,
                                      description=__doc__.splitlines()[0])
    if action == "pull":
        restored = pull_latest_checkpoint(config.repo_id, config.checkpoint_dir)
        print(f"restored {restored}" if restored else "nothing to restore")
        return
    while True:
        sent = push_latest_checkpoint(config.checkpoint_dir, config.repo_id, private=not config.public)
        print(f"synced {sent}" if sent else "up to date", flush=True)
        if action == "push":
            return
        time.sleep(config.every)


if __name__ == "__main__":
    main()
