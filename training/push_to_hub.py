"""Push a merged model, adapters or a prepared dataset to the Hugging Face Hub, with its card.

The `chatterbox-latam push` command (chatterbox_latam/cli/push.py), runnable from a checkout as this script:
`python training/push_to_hub.py --help` lists its options.
"""

from chatterbox_latam.cli.push import main

if __name__ == "__main__":
    main()
