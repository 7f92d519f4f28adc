"""Batch inference: one WAV per line of a text file, in a cloned voice.

The `chatterbox-latam generate` command (chatterbox_latam/cli/generate.py), runnable from a checkout as this script:
`python training/generate.py --help` lists its options.
"""

from chatterbox_latam.cli.generate import main

if __name__ == "__main__":
    main()
