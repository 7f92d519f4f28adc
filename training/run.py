"""Train LoRA adapters for Chatterbox on a prepared Latin-American Spanish dataset.

The `chatterbox-latam train` command (chatterbox_latam/cli/train.py), runnable from a checkout as this script:
`python training/run.py --help` lists its options.
"""

from chatterbox_latam.cli.train import main

if __name__ == "__main__":
    main()
