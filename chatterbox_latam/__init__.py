"""Chatterbox ES-LATAM: Latin-American Spanish LoRA fine-tuning of Resemble AI's Chatterbox TTS.

One subpackage per stage, in the order the data flows; each imports only from the ones before it
(`constants`, `utils`, `compat` and `parser` come first; each stage keeps its own `config`):

    models      checkpoints, LoRA, merging          data        sources, audio, text, features, prepared dataset
    synthesis   ChatterboxLatamTTS, fast decoding   evaluation  harness, metrics, report, listening test
    hub         cards and pushes                    training    the training config, loss module, Trainer, job
    testing     the tiny model and espeak corpus (stand-ins), checks against the real weights
    cli         the `chatterbox-latam` command, one subcommand per stage

    from chatterbox_latam import ChatterboxLatamTTS, generate_speech
    model = ChatterboxLatamTTS.from_pretrained("USER/chatterbox-es-latam")
"""

__version__ = "0.1.0"
__all__ = ["ChatterboxLatamTTS", "GenerationSettings", "generate_speech", "load_model"]

_HOMES = {"ChatterboxLatamTTS": "tts", "generate_speech": "tts", "load_model": "tts",
          "GenerationSettings": "config"}


def __getattr__(name: str):
    # Lazy, so that `import chatterbox_latam.data.text` does not import torch.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".synthesis.{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
