"""Raw Latin-American Spanish recordings (or a Hub dataset) -> the prepared feature dataset.

The `chatterbox-latam prepare` command (chatterbox_latam/cli/prepare.py), runnable from a checkout as this script:
`python training/prepare_data.py --help` lists its options.
"""

from chatterbox_latam.cli.prepare import main

if __name__ == "__main__":
    main()
