"""Merge LoRA adapters into the base model: a standalone model folder that `from_pretrained` loads.

    python training/merge.py --adapter runs/demo/checkpoints/final --output_dir runs/demo/merged
    python training/merge.py --base ResembleAI/chatterbox --adapter mx=runs/mx/final --adapter ar=runs/ar/final \
        --output_dir runs/merged --dtype bfloat16

Merged in fp32, then cast to --dtype; safetensors weights (plus upstream's ve.pt / s3gen.pt / conds.pt for a
full-size base, so `ChatterboxMultilingualTTS.from_local` loads it too). Each `ACCENT=PATH` adapter is merged into
its own model, in `<output_dir>/<ACCENT>`. The merged model is loaded back and checked against the adapter model
before it is kept; config.json records the difference.
"""

from __future__ import annotations

import argparse
import logging

from chatterbox_latam.models.merge import DTYPES, merge_adapter
from chatterbox_latam.synthesis.tts import voice_from


def parse_adapters(values: list[str]) -> dict[str | None, str]:
    """`PATH` (one adapter) or `ACCENT=PATH` pairs (one model each)."""
    if len(values) == 1 and "=" not in values[0]:
        return {None: values[0]}
    adapters = {}
    for value in values:
        accent, sep, path = value.partition("=")
        if not sep or not accent or not path:
            raise SystemExit(f"--adapter {value!r}: with several adapters, name each one: --adapter mx=PATH.")
        adapters[accent] = path
    return adapters


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", action="append", required=True,
                        help="Adapter folder (training's final/), or ACCENT=PATH, repeatable.")
    parser.add_argument("--output_dir", required=True, help="Folder of the merged model (per accent: its parent).")
    parser.add_argument("--base", default=None, help="Base model folder or Hub repo id (default: adapter.json's).")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="Precision of the saved weights.")
    parser.add_argument("--default_voice", default=None, help="WAV that becomes the model's default voice.")
    parser.add_argument("--upstream_layout", default=None, action=argparse.BooleanOptionalAction,
                        help="Also write upstream's ve.pt / s3gen.pt / conds.pt (default: for full-size bases).")
    args = parser.parse_args(argv)
    for accent, path in parse_adapters(args.adapter).items():
        output = args.output_dir if accent is None else f"{args.output_dir.rstrip('/')}/{accent}"
        result = merge_adapter(path, output, base_model=args.base, dtype=args.dtype, 
                               default_voice=voice_from(args.default_voice) if args.default_voice else None,
                               upstream_layout=args.upstream_layout, accent=accent)
        worst = max(result.check.values())
        print(f"merged {path} -> {result.output_dir} ({args.dtype}; max relative difference to the adapter model "
              f"{worst:.1e}{'; upstream layout too' if result.upstream_layout else ''}); loaded back with "
              "ChatterboxLatamTTS.from_pretrained and checked")


if __name__ == "__main__":
    main()
