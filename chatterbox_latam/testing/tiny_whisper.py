"""A random-weight Whisper in the real transformers format, for the ASR paths offline (WER, the seed-tts-eval
protocol, segmentation): a byte-level BPE vocabulary trained on a few Spanish words plus Whisper's special tokens
(start of transcript, the language tokens, the tasks, no-timestamps), a 1-layer encoder and decoder, a generation
config that knows the languages and tasks (what forcing `language="spanish"` reads), and the feature extractor."""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<|startoftranscript|>", "<|en|>", "<|es|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                  "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def write_tiny_whisper(folder: str | Path, seed: int = 0) -> Path:
    """Writes the model, tokenizer and feature extractor into `folder` and returns it (pass it as --asr_model)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["hola, ¿qué tal? el niño está aquí; son las diez y media"] * 4, vocab_size=300,
                            min_frequency=1, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(folder))
    eot = "<|endoftext|>"
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=eot,
                                 bos_token=eot, eos_token=eot, pad_token=eot)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in [eot, *SPECIAL_TOKENS]}
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, encoder_layers=1, decoder_layers=1, d_model=16,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_target_positions=64,
                           decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[eot],
                           pad_token_id=ids[eot], bos_token_id=ids[eot])
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[eot], pad_token_id=ids[eot],
        bos_token_id=ids[eot], max_length=24, is_multilingual=True, begin_suppress_tokens=[ids[eot]],
        lang_to_id={"<|en|>": ids["<|en|>"], "<|es|>": ids["<|es|>"]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    return folder
