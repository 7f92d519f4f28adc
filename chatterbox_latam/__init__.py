"""Chatterbox ES-LATAM: Latin-American Spanish LoRA fine-tuning of Resemble AI's Chatterbox TTS.

Stages, one module each: `sources` + `audio` + `text` + `features` -> `prepare` (the feature dataset),
`lora` + `collator` + `modeling_training` + `trainer` -> `finetune` (adapters), `metrics` -> `evaluation`
(reports) -> `merge` (a standalone model) -> `hub` (cards and pushes). `modeling` is the one checkpoint loader;
`inference` synthesises:

    from chatterbox_latam import ChatterboxLatamTTS
    model = ChatterboxLatamTTS.from_pretrained("USER/chatterbox-es-latam")
"""

__version__ = "0.1.0"
__all__ = ["ChatterboxLatamTTS"]


def __getattr__(name: str):
    # Lazy, so that `import chatterbox_latam.text` does not import torch.
    if name == "ChatterboxLatamTTS":
        from .inference import ChatterboxLatamTTS

        return ChatterboxLatamTTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
