"""Do training and inference read the real ResembleAI weights right? (needs the Hugging Face Hub)

    chatterbox-latam check-real --base v2|v3|es-mx-latam|es-es [--data FOLDER] [--device cuda]

Downloads the base and checks decoding against upstream, the pretrained loss, the training layout, S3Gen's
speaker conditioning, five LoRA steps, a merge and one sentence (see chatterbox_latam/testing/check_real.py).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from ..testing.check_real import main as check_real

    return check_real(argv)


if __name__ == "__main__":
    raise SystemExit(main())
