"""Long recordings (podcasts, audiobooks, interviews, a read script) -> clips with transcripts in the folder layout.

The `chatterbox-latam segment` command (chatterbox_latam/cli/segment.py), runnable from a checkout as this script:
`python training/segment_recordings.py --help` lists its options.
"""

from chatterbox_latam.cli.segment import main

if __name__ == "__main__":
    main()
