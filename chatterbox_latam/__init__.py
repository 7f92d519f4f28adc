"""Chatterbox ES-LATAM: Latin-American Spanish LoRA fine-tuning of Resemble AI's Chatterbox TTS.

Stages, one module each: `sources` + `audio` + `text` + `features` -> `prepare` (the feature dataset),
`lora` + `collator` + `modeling_training` + `trainer` -> `finetune` (adapters), `metrics` -> `evaluation`
(reports). `modeling` is the one checkpoint loader; `inference` synthesises.
"""

__version__ = "0.1.0"
