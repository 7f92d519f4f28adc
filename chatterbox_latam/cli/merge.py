"""Merge LoRA adapters into the base model: a standalone model folder that `from_pretrained` loads.

    chatterbox-latam merge --adapter runs/demo/checkpoints/final --output_dir runs/demo/merged
    chatterbox-latam merge --base ResembleAI/chatterbox --adapter mx=runs/mx/final --adapter ar=runs/ar/final \
        --output_dir runs/merged --dtype bfloat16
    chatterbox-latam merge --adapter runs/demo/checkpoints/final --output_dir runs/demo/merged --gguf q4_0

Merged in fp32, then cast to --dtype; safetensors weights (plus upstream's ve.pt / s3gen.pt / conds.pt for a
full-size base, so `ChatterboxMultilingualTTS.from_local` loads it too). Each `ACCENT=PATH` adapter is merged into
its own model, in `<output_dir>/<ACCENT>`. The merged model is loaded back and checked against the adapter model
before it is kept; config.json records the difference. `--gguf` adds T3's backbone as a GGUF for llama.cpp
(`t3-q4_0.gguf`: the speech head as its output layer; T3's input embeddings go in through llama.cpp's embeddings
input, see chatterbox_latam/synthesis/cpu_fast/gguf.py); it needs the cpu-fast extra.
"""

from __future__ import annotations

import logging

from ..models.config import MergeConfig
from ..models.merge import merge_adapter
from ..parser import parse_recipe
from ..synthesis.cpu_fast.gguf import gguf_name, merged_gguf
from ..synthesis.voices import voice_from


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
    (config,) = parse_recipe({"merge": MergeConfig}, argv, description=__doc__.splitlines()[0])
    extra_files = merged_gguf(config.gguf) if config.gguf else None  # without the extra: fails before any merge
    for accent, path in parse_adapters(config.adapter).items():
        output = config.output_dir if accent is None else f"{config.output_dir.rstrip('/')}/{accent}"
        voice = voice_from(config.default_voice) if config.default_voice else None
        result = merge_adapter(path, output, base_model=config.base, dtype=config.dtype, default_voice=voice,
                               upstream_layout=config.upstream_layout, accent=accent, extra_files=extra_files)
        worst = max(result.check.values())
        print(f"merged {path} -> {result.output_dir} ({config.dtype}; max relative difference to the adapter model "
              f"{worst:.1e}{'; upstream layout too' if result.upstream_layout else ''}"
              f"{f'; T3 for llama.cpp in {gguf_name(config.gguf)}' if config.gguf else ''}); loaded back and checked")


if __name__ == "__main__":
    main()
