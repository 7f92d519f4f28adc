"""S3Gen on speech tokens (flow + HiFT, at a chosen flow precision) and Resemble's Perth watermark, applied to
everything the project ships."""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..compat import flow_inference, flow_inference_at_precision, hift_inference, reference_fade
from ..constants import S3GEN_MODES, S3GEN_SR, SAMPLES_PER_TOKEN, SPEECH_VOCAB_SIZE


@torch.inference_mode()
def tokens_to_wav(s3gen, speech_tokens: torch.Tensor, ref_dict: dict, watermark: bool = True,
                  sample_rate: int = S3GEN_SR, cfm_steps: int | None = None, flow=None,
                  drop_last_token: bool = False) -> np.ndarray:
    """S3Gen (flow + HiFT) on valid speech tokens, then Resemble's Perth watermark (kept in all the project ships).
    `cfm_steps`: Euler steps of the flow-matching decoder (upstream: 10; fewer is faster, see the benchmark).
    `flow`: an S3Gen copy to run the flow with (`flow_for_mode`, e.g. bf16); the vocoder always runs on `s3gen`.
    `drop_last_token`: cut the last token's audio, as upstream main does for v3 (`Generation.drop_last_token`).

    The meanflow decoder is fed as Chatterbox-Turbo feeds it (`ChatterboxTurboTTS.generate`): the tokens followed by
    three silence tokens (`with_silence_tail`), so its 3-token lookahead reads silence, not zero padding, past the
    last real token; the silence's audio is then cut, so the utterance lasts as long as with the standard decoder."""
    speech_tokens = speech_tokens[speech_tokens < SPEECH_VOCAB_SIZE].to(s3gen.device)
    if speech_tokens.numel() == 0:
        return np.zeros(0, dtype=np.float32)
    spoken = speech_tokens.numel()
    speech_tokens = with_silence_tail(s3gen, speech_tokens)
    # upstream's `S3Gen.inference` in its two steps, so the flow may run on a copy at another precision
    mels = flow_mels(s3gen if flow is None else flow, speech_tokens, ref_dict, cfm_steps)
    wav, _ = hift_inference(s3gen, mels.to(s3gen.dtype))
    fade_in(s3gen, wav)
    wav = wav.squeeze(0).detach().cpu().numpy().astype(np.float32)
    if speech_tokens.numel() > spoken:  # the silence tail's audio
        wav = wav[: spoken * SAMPLES_PER_TOKEN]
    if drop_last_token:
        wav = wav[: max(1, spoken - 1) * SAMPLES_PER_TOKEN]
    return apply_watermark(wav, sample_rate) if watermark else wav


def fade_in(s3gen, wav: torch.Tensor) -> None:
    """Upstream's fade-in against spill-over from the reference (`S3Gen.trim_fade`), in place on (1, samples), cut
    to the audio's length: after a reference with an odd number of mel frames (which upstream's `embed_ref` keeps),
    the audio comes out one frame short, and an utterance of one token is then shorter than the fade."""
    fade = reference_fade(s3gen)[: wav.shape[1]]
    wav[:, : len(fade)] *= fade


MEANFLOW_SILENCE_TOKENS = 3
"""Silence tokens (upstream's `S3GEN_SIL`) Chatterbox-Turbo appends before its meanflow S3Gen: one per token of the
flow encoder's lookahead (`pre_lookahead_len`)."""


def with_silence_tail(s3gen, speech_tokens: torch.Tensor) -> torch.Tensor:
    """The 1-D valid `speech_tokens` as `s3gen` is to be fed them: with `MEANFLOW_SILENCE_TOKENS` of upstream's
    `S3GEN_SIL` appended for the meanflow decoder (as `ChatterboxTurboTTS.generate` does), unchanged for the
    standard one (as `ChatterboxMultilingualTTS.generate` feeds it)."""
    from chatterbox.models.s3gen.const import S3GEN_SIL

    if not getattr(s3gen, "meanflow", False):
        return speech_tokens
    silence = torch.full((MEANFLOW_SILENCE_TOKENS,), S3GEN_SIL, dtype=speech_tokens.dtype, device=speech_tokens.device)
    return torch.cat([speech_tokens, silence])


def flow_mels(flow, speech_tokens: torch.Tensor, ref_dict: dict, cfm_steps: int | None) -> torch.Tensor:
    """S3Gen's flow at the copy's precision (`compat.flow_inference`, or `compat.flow_inference_at_precision` for a
    copy at another); fp32 mels for the vocoder.

    Upstream's `S3Token2Mel.forward` casts every tensor of the reference to the model's dtype, in the dict it is
    given: the prompt's speech token ids too. So fp32 gets a copy of the dict (the caller's, often a cached
    reference, keeps its integer ids), and a copy at another precision is called as `flow_inference` calls it with
    the ids and lengths kept integers and only the features cast: bf16 holds integers exactly only up to 256 (ids up
    to 6560 came out rounded to a multiple of 16 or 32: another prompt). The meanflow decoder's noise is drawn in fp32
    and cast, so a seed gives the numbers fp32 starts from; the CFM's own draw (`randn_like` of its input, over the
    prompt too) is at the copy's precision, which on a CPU gives other numbers than fp32 for the same seed."""
    run = flow_inference if flow.dtype == torch.float32 else flow_inference_at_precision
    return run(flow, torch.atleast_2d(speech_tokens), ref_dict, cfm_steps).float()


def with_prompt(ref_dict: dict, tokens: torch.Tensor, mels: torch.Tensor) -> dict:
    """`ref_dict` (`S3Gen.embed_ref`'s) with another prompt for the flow to continue: speech tokens (1, n) and
    their mel frames (1, 2n, 80); the speaker embedding stays."""
    ref = dict(ref_dict)
    ref["prompt_token"], ref["prompt_feat"] = tokens, mels
    ref["prompt_token_len"] = torch.full_like(ref_dict["prompt_token_len"], tokens.shape[1])
    if ref_dict.get("prompt_feat_len") is not None:
        ref["prompt_feat_len"] = torch.full_like(ref_dict["prompt_feat_len"], mels.shape[1])
    return ref


def cut_prompt(ref_dict: dict, tokens: int) -> dict:
    """`ref_dict` with its prompt cut to the last `tokens` speech tokens (the new speech continues the prompt, so
    its end is kept), each with its two mel frames. Token i of the prompt goes with frames 2i and 2i + 1 counted
    from the start: `S3Gen.embed_ref` keeps `mel frames // 2` tokens, so a reference may hold one frame more than
    two a token (an odd count), and that frame, after the last token's, is left out."""
    total = ref_dict["prompt_token"].shape[1]
    if total <= tokens:
        return ref_dict
    return with_prompt(ref_dict, ref_dict["prompt_token"][:, -tokens:],
                       ref_dict["prompt_feat"][:, 2 * (total - tokens): 2 * total])


def flow_for_mode(s3gen, mode: str):
    """The S3Gen to run the flow with: `s3gen` itself for 'fp32'; for 'bf16' a bf16 copy with any LoRA adapter
    (the active one) folded in. About 2x faster on a CPU with bf16 matrix units (see the benchmark); its effect on
    quality is for the evaluation harness to show on real weights (`evaluate.py --s3gen_mode bf16`)."""
    if mode not in S3GEN_MODES:
        raise ValueError(f"s3gen_mode={mode!r}: use one of {S3GEN_MODES}.")
    if mode == "fp32":
        return s3gen
    import copy

    flow = copy.deepcopy(s3gen)
    if hasattr(flow.flow, "merge_and_unload"):
        flow.flow = flow.flow.merge_and_unload()
    return flow.to(torch.bfloat16)


@functools.lru_cache(maxsize=1)
def _watermarker():
    import perth

    return perth.PerthImplicitWatermarker()


@torch.inference_mode()  # the cached watermarker's tensors are inference tensors: never run it under autograd
def apply_watermark(wav: np.ndarray, sample_rate: int = S3GEN_SR) -> np.ndarray:
    """Resemble's Perth watermark (kept in everything the project ships)."""
    if wav.size == 0:
        return wav.astype(np.float32)
    return np.asarray(_watermarker().apply_watermark(wav, sample_rate=sample_rate), dtype=np.float32)

