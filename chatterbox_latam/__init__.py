"""Chatterbox ES-LATAM: Latin-American Spanish LoRA fine-tuning of Resemble AI's Chatterbox TTS.

One subpackage per stage, in the order the data flows; each imports only from the ones before it
(`constants`, `utils` and `config` come first):

    models      checkpoints, LoRA, merging          data        sources, audio, text, features, prepared dataset
    synthesis   ChatterboxLatamTTS, fast decoding   evaluation  harness, metrics, report, listening test
    hub         cards and pushes                    training    the loss module, the Trainer, the job
    testing     the tiny model and espeak corpus (stand-ins), checks against the real weights

    from chatterbox_latam import ChatterboxLatamTTS, generate_speech
    model = ChatterboxLatamTTS.from_pretrained("USER/chatterbox-es-latam")
"""

__version__ = "0.1.0"
__all__ = ["ChatterboxLatamTTS", "generate_speech", "load_model"]


def __getattr__(name: str):
    # Lazy, so that `import chatterbox_latam.data.text` does not import torch.
    if name in __all__:
        from .synthesis import tts

        return getattr(tts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
