"""`python -m chatterbox_latam.cli COMMAND ...`: the `chatterbox-latam` command without its console script."""

from . import main

main()
