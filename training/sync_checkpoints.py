"""Keep a Hub copy of the newest checkpoint, and get it back on a fresh machine (Runpod, spot instances).

The `chatterbox-latam sync` command (chatterbox_latam/cli/sync.py), runnable from a checkout as this script:
`python training/sync_checkpoints.py --help` lists its options.
"""

from chatterbox_latam.cli.sync import main

if __name__ == "__main__":
    main()
