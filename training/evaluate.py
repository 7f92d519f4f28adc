"""Evaluate a checkpoint: WER/CER, speaker similarity, MOS proxy, accent and RTF, against the base and the recordings.

The `chatterbox-latam evaluate` command (chatterbox_latam/cli/evaluate.py), runnable from a checkout as this script:
`python training/evaluate.py --help` lists its options.
"""

from chatterbox_latam.cli.evaluate import main

if __name__ == "__main__":
    main()
