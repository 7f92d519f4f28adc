"""Human MOS: build a blinded listening test from an evaluation, then score the listeners' ratings.

The `chatterbox-latam mos-kit` command (chatterbox_latam/cli/mos_kit.py), runnable from a checkout as this script:
`python training/mos_kit.py --help` lists its options.
"""

from chatterbox_latam.cli.mos_kit import main

if __name__ == "__main__":
    main()
