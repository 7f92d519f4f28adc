"""Merge LoRA adapters into the base model: a standalone model folder that `from_pretrained` loads.

The `chatterbox-latam merge` command (chatterbox_latam/cli/merge.py), runnable from a checkout as this script:
`python training/merge.py --help` lists its options.
"""

from chatterbox_latam.cli.merge import main

if __name__ == "__main__":
    main()
