"""A tiny, seeded, random-init Chatterbox multilingual checkpoint for tests and the offline demo.

It is built from the upstream classes and written in the file layout of the `ResembleAI/chatterbox` Hub repo
(`ve.pt`, `t3_mtl23ls_v2.safetensors`, `s3gen.pt`, `grapheme_mtl_merged_expanded_v1.json`), plus a `config.json`
recording the reduced sizes, so `chatterbox_latam.models.loading` loads it exactly as it loads the real weights.
T3 keeps width 1024 (the perceiver hard-codes it) with 2 Llama layers; S3Gen gets a one-block flow, a narrow
CAMPPlus and a narrow HiFT, each of upstream's classes, and keeps upstream's S3 tokenizer (the speech tokens T3
learns are its output: a smaller random one gives tokens of other statistics). Beside them lies a meanflow S3Gen
(`s3gen_meanflow.safetensors`, as `ResembleAI/chatterbox-turbo` ships it) of the same sizes, which shares the
standard one's tokenizer, speaker encoder and vocoder: only its flow decoder is its own.

    python -m chatterbox_latam.testing.tiny_model --output_dir runs/demo/tiny_model
"""

from __future__ import annotations

import argparse
import json
import os
import unicodedata
from pathlib import Path

import torch

from ..constants import CONFIG_NAME, LAYOUTS, MEANFLOW_FILE, MODEL_TYPE
from ..models.loading import build_s3gen, build_t3
from ..utils import staged_directory

# Reduced sizes (see module docstring). Bump TINY_VERSION whenever they or the tokenizer change: caches key on it.
TINY_VERSION = 3
TINY_CONFIG = {
    "model_type": MODEL_TYPE,
    "layout": "multilingual",
    "tiny_version": TINY_VERSION,
    "t3": {"llama": {"num_hidden_layers": 2, "intermediate_size": 1024}},
    "s3gen": {
        "encoder": {"num_blocks": 1, "linear_units": 512},
        "decoder": {"n_blocks": 1, "num_mid_blocks": 1},
        "speaker_encoder": {"init_channels": 32, "growth_rate": 16},
        "vocoder": {"base_channels": 64},
    },
}

# Token ids the upstream code relies on: T3Config's start/stop text tokens and the tokenizer's special tokens.
STOP, START = 0, 255
SPECIAL_TOKENS = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
LANGUAGE_TAGS = [
    "ar", "da", "de", "el", "en", "es", "fi", "fr", "he", "hi", "it", "ja",
    "ko", "ms", "nl", "no", "pl", "pt", "ru", "sv", "sw", "tr", "zh",
]
# Characters after the tokenizer's lower-casing and NFKD: Spanish letters decompose into a base letter and a
# combining mark (á -> a + U+0301, ñ -> n + U+0303, ü -> u + U+0308).
GRAPHEMES = (
    list("abcdefghijklmnopqrstuvwxyz0123456789")
    + ["\u0301", "\u0300", "\u0302", "\u0303", "\u0308", "\u0327"]
    + list(".,;:!?¡¿'\"-()«»%$€/&+*=@#")
)


def build_grapheme_tokenizer_json() -> str:
    """A grapheme tokenizer (`tokenizers` JSON) that upstream's `MTLTokenizer` loads: one token per character,
    `[START]`/`[STOP]` at T3Config's ids, `[SPACE]` and the 23 language tags as whole tokens."""
    from tokenizers import AddedToken, Tokenizer, models

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab["[START]"] = START
    vocab.update({f"[{tag}]": 700 + i for i, tag in enumerate(LANGUAGE_TAGS)})
    next_id = len(SPECIAL_TOKENS)
    for grapheme in GRAPHEMES:
        assert unicodedata.normalize("NFKD", grapheme) == grapheme
        while next_id in vocab.values():
            next_id += 1
        vocab[grapheme] = next_id
        next_id += 1
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    specials = SPECIAL_TOKENS + ["[START]"] + [f"[{tag}]" for tag in LANGUAGE_TAGS]
    tokenizer.add_special_tokens([AddedToken(token, normalized=False) for token in specials])
    return tokenizer.to_str(pretty=True)


FULL_SIZE_CONFIG = {"model_type": MODEL_TYPE, "layout": "multilingual", "tiny_version": TINY_VERSION,
                    "full_size": True}


TINY_LAYOUTS = ("multilingual", "multilingual-v3", "es-mx-latam", "es-es")


def build_tiny_checkpoint(output_dir: str | os.PathLike, seed: int = 0, force: bool = False,
                          full_size: bool = False, layout: str = "multilingual", meanflow: bool = True) -> Path:
    """Writes the tiny checkpoint to `output_dir` and returns it; an existing complete one is reused.

    `layout` follows the Hub repos: 'multilingual' is `ResembleAI/chatterbox` as 0.1.7 reads it (v2 T3);
    'multilingual-v3' the same repo since upstream main added the v3 T3 beside v2 (both files; `t3_model` picks);
    'es-mx-latam' / 'es-es' a Single Language Pack: its T3 under the pack's name and an `s3gen_v3.pt` without the
    two computed buffers the pack's file lacks. A pack takes its VE, tokenizer and default voice from
    `ResembleAI/chatterbox`, as the real packs do.

    `full_size` builds upstream's sizes instead (T3 30 layers, the whole S3Gen; ~3 GB, random weights): what
    speed measurements and the upstream-compatibility checks need. Its config.json records no reduced sizes, so
    it loads like the real checkpoint (upstream's `from_local` included). `meanflow=False` leaves out the meanflow
    S3Gen (a full-size one is another 1 GB).

    The folder is assembled in a temporary sibling and renamed into place, so an interrupted build never leaves
    a folder that looks complete.
    """
    from chatterbox.models.voice_encoder import VoiceEncoder
    from safetensors.torch import save_file

    from ..compat import computed_s3gen_buffers

    if layout not in TINY_LAYOUTS:
        raise ValueError(f"layout={layout!r}: use one of {TINY_LAYOUTS}.")
    output_dir = Path(output_dir)
    config_path = output_dir / CONFIG_NAME
    if not force and config_path.exists():
        existing = json.loads(config_path.read_text())
        if (existing.get("tiny_version") == TINY_VERSION and existing.get("full_size", False) == full_size
                and existing.get("tiny_layout", "multilingual") == layout
                and (not meanflow or (output_dir / MEANFLOW_FILE).exists())):
            return output_dir
    spec = LAYOUTS[layout]
    config = dict(FULL_SIZE_CONFIG if full_size else TINY_CONFIG)
    if layout == "multilingual-v3":
        config.pop("layout")  # the repo holds both T3 files: `t3_model` (or v2 by default) picks, as upstream
    elif layout != "multilingual":
        config["layout"] = layout
    config["tiny_layout"] = layout
    pack = spec.support_repo is not None
    with staged_directory(output_dir) as staging:
        torch.manual_seed(seed)
        if not pack:
            (staging / spec.tokenizer).write_text(build_grapheme_tokenizer_json(), encoding="utf-8")
            torch.save(VoiceEncoder().state_dict(), staging / spec.ve)
        t3_files = [LAYOUTS["multilingual"].t3, spec.t3] if layout == "multilingual-v3" else [spec.t3]
        for i, name in enumerate(t3_files):  # v2 and v3 differ, as their real weights do
            if i:
                torch.manual_seed(seed + 1)
            t3 = build_t3(config)
            save_file({k: v.contiguous() for k, v in t3.state_dict().items()}, str(staging / name))
            del t3
        state = build_s3gen(config).state_dict()
        if pack:  # saved by a newer S3Gen, as the pack's s3gen_v3.pt is
            state = {k: v for k, v in state.items() if k not in computed_s3gen_buffers()}
        torch.save(state, staging / spec.s3gen)
        if meanflow:
            distilled = build_s3gen(config, meanflow=True)
            distilled.load_state_dict({k: v for k, v in state.items() if not k.startswith("flow.")}, strict=False)
            save_file({k: v.contiguous() for k, v in distilled.state_dict().items()}, str(staging / MEANFLOW_FILE))
            del distilled
        (staging / CONFIG_NAME).write_text(json.dumps({**config, "seed": seed}, indent=2), encoding="utf-8")
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="runs/demo/tiny_model", help="Folder to write the checkpoint to.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random initialisation.")
    parser.add_argument("--force", action="store_true", help="Rebuild even if a complete checkpoint is there.")
    parser.add_argument("--full_size", action="store_true", help="Upstream's sizes (~3 GB) instead of the tiny ones.")
    parser.add_argument("--layout", default="multilingual", choices=TINY_LAYOUTS,
                        help="Which Hub repo's file layout to write (a language pack, or the base with v2 and v3).")
    args = parser.parse_args(argv)
    path = build_tiny_checkpoint(args.output_dir, seed=args.seed, force=args.force, full_size=args.full_size,
                                 layout=args.layout)
    print(f"tiny checkpoint: {path}")


if __name__ == "__main__":
    main()

