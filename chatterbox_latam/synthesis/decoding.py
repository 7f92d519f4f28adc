"""Fast T3 decoding: the same sampling as upstream `T3.inference`, without its per-step overhead, at a chosen precision.

Upstream asks for every layer's attention at every step (which forces eager attention), hooks three layers for its
alignment heuristics and copies their attention to the host, grows a dynamic KV cache, and syncs with the host at
every step to test for the stop token. This decoder
- keeps SDPA attention and a static KV cache (preallocated to the token budget; no reallocation per step);
- draws the same random numbers in the same order as upstream (CFG as one batch of two, or the conditional row
  alone at `cfg_weight` 0, where the other cannot count: `cfg_rows`; then upstream's
  repetition penalty, temperature, min-p and top-p, then `torch.multinomial`), so in fp32 it gives upstream's
  tokens on the same weights, inputs and seed;
- looks at the generated tokens on the host only every `stop_check_every` steps (tokens after the stop token are
  dropped, so the result is unchanged);
- runs T3 in one of the `MODES`: fp32 (exact), bf16 weights, dynamic int8 Linear layers
  (`torch.ao.quantization.quantize_dynamic`, CPU only), int8 / int4 weights with bf16 activations (`int8-wo`,
  `int4-wo`, CPU), or the backbone on llama.cpp (`llamacpp-q4_0` / `llamacpp-q8_0`, CPU: `cpu_fast.engine`, fed
  the same embeddings, read by the same speech head and sampling). On CPU, fp32 decoding is bound by reading the
  weights (see docs/speed.md for the figures): the bytes per weight, not loop overhead, are the lever there.

Upstream's multilingual alignment heuristics (`AlignmentStreamAnalyzer`: suppress the stop token until the text
has been read, force it on a long tail or repetition) run, as upstream runs them, for a multilingual T3 that has
the layers they watch (`runs_alignment`), whenever one utterance is decoded (`alignment=False` turns them off).
They read attention maps of layers 9, 12 and 13: those three layers run eager attention (upstream switches all of
them), and the analyzer looks at every step on the host (see docs/speed.md for the cost). They follow one
utterance, so utterances decoded together (`fast_decode_batch`) go without them, and so does llama.cpp's backbone,
which exposes no attention maps.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn

from ..compat import attention_implementation, forward_hooks_removed, with_attention_implementation
from ..constants import SPEECH_VOCAB_SIZE
from .config import GenerationSettings

# The weight-only kernels are matrix-vector kernels: fast for decoding's few rows, several times slower than bf16's
# matrix kernels for a prompt's hundreds. Above this many rows the weight-only layers use a bf16 copy of the weight
# (decoding reads only the small weights; the copy costs memory, not speed).
PREFILL_ROWS = 64


def cast_cond(t3_cond, device, dtype):
    """A copy of the conditioning on `device` / `dtype` (T3Cond.to works in place, and a voice is reused)."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    copied = T3Cond(**dict(t3_cond.__dict__))
    return copied.to(device=device, dtype=dtype if dtype != torch.float32 else None)


UPSTREAM_V2 = GenerationSettings().for_generation("v2")
"""What a decoding function samples with when not told: upstream's multilingual `generate` for a v2 T3."""


def _processors(settings: GenerationSettings):
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TopPLogitsWarper,
    )

    if settings.repetition_penalty is None:
        raise ValueError("settings.repetition_penalty is None: fill it for the model's generation "
                         "(`settings.for_generation(...)`, as `ChatterboxLatamTTS.settings_for` does).")
    return (RepetitionPenaltyLogitsProcessor(penalty=float(settings.repetition_penalty)),
            MinPLogitsWarper(min_p=settings.min_p), TopPLogitsWarper(top_p=settings.top_p))


@torch.inference_mode()
def prefix_embeds(t3, t3_cond, text_tokens: torch.Tensor, cfg_weight: float) -> tuple[torch.Tensor, int]:
    """Conditioning + text + start-of-speech embeddings for the CFG pair, plus upstream's second start token.
    Returns (embeds (2, L, D), length of the conditioning prefix)."""
    device = t3.speech_emb.weight.device
    text_tokens = torch.atleast_2d(text_tokens).to(device=device, dtype=torch.long)
    bos = torch.full((text_tokens.shape[0], 1), t3.hp.start_speech_token, dtype=torch.long, device=device)
    embeds, len_cond = t3.prepare_input_embeds(t3_cond=t3_cond, text_tokens=text_tokens, speech_tokens=bos,
                                               cfg_weight=cfg_weight)
    # upstream appends the start token once more after the prefix, which already ends with it
    bos_embed = t3.speech_emb(bos[:1]) + t3.speech_pos_emb.get_fixed_embedding(0)
    return torch.cat([embeds, bos_embed.expand(embeds.shape[0], -1, -1)], dim=1), len_cond


@torch.inference_mode()
def fast_decode(t3, t3_cond, text_tokens: torch.Tensor, max_new_tokens: int = 1000,
                settings: GenerationSettings | None = None, stop_check_every: int = 8, static_cache: bool = True,
                alignment: bool | None = None) -> torch.Tensor:
    """Speech tokens for one utterance, upstream's sampling (see the module docstring). `text_tokens`: (1, L)
    with start/stop tokens. Returns the tokens up to and including the stop token, as upstream does, shape (1, N).

    `t3` may be a copy from `t3_for_mode`; the conditioning is cast to its dtype. `alignment`: upstream's
    alignment heuristics (None: where upstream runs them, `runs_alignment`).
    """
    [(tokens, _)] = stream_decode(t3, t3_cond, text_tokens, max_new_tokens, settings,
                                  chunk_tokens=max_new_tokens + 1, stop_check_every=stop_check_every,
                                  static_cache=static_cache, alignment=alignment)
    return tokens


def runs_alignment(t3) -> bool:
    """Whether upstream runs its alignment heuristics for this T3: multilingual, with the layers they watch (a
    reduced test model may not have them)."""
    from chatterbox.models.t3.inference.alignment_stream_analyzer import (
        LLAMA_ALIGNED_HEADS,
    )

    if getattr(t3, "engine", None) is not None:  # an inference engine's backbone exposes no attention maps
        return False
    return bool(t3.hp.is_multilingual) and len(t3.tfmr.layers) > max(layer for layer, _ in LLAMA_ALIGNED_HEADS)


def adapted_watched_attention(t3) -> bool:
    """Whether a LoRA adapter on this T3 changed the attention maps upstream's alignment heuristics read (heads of
    layers 9, 12 and 13): they can run on it (`runs_alignment`) and it has LoRA weights in any module of a layer
    below the last one they watch (which changes the stream those maps are computed from) or in that layer's
    attention. Their thresholds were set on the base's maps, so on such a T3 they judge alignment from maps the
    adapter moved. (The project's LoRA targets apply to every layer: any T3 adapter does.)"""
    from chatterbox.models.t3.inference.alignment_stream_analyzer import (
        LLAMA_ALIGNED_HEADS,
    )

    if not runs_alignment(t3):
        return False
    last = max(layer for layer, _ in LLAMA_ALIGNED_HEADS)
    for name, _ in t3.named_parameters():
        found = re.search(r"layers\.(\d+)\.", name) if "lora_" in name else None
        if found and (int(found.group(1)) < last or (int(found.group(1)) == last and ".self_attn." in name)):
            return True
    return False


def default_alignment(generation, t3, adapted_attention: bool | None = None) -> bool:
    """Whether upstream's alignment heuristics run by default when this T3 decodes one utterance: where upstream
    runs them for its `generation` (`constants.GENERATIONS`: 0.1.7's v2 yes, upstream main's v3 and packs no), and
    not where an adapter changed the attention they read (`adapted_watched_attention`; `adapted_attention`: what a
    merged model's config.json says, its T3 holding no LoRA weights to look at), which is how upstream main decodes
    every model. What synthesis (`ChatterboxLatamTTS`), the precision guard and training's audio samples decode
    with when nothing says otherwise."""
    if not generation.alignment or not runs_alignment(t3):
        return False
    adapted = adapted_watched_attention(t3) if adapted_attention is None else adapted_attention
    return not adapted


@torch.inference_mode()
def fast_decode_batch(t3, t3_cond, texts: list[torch.Tensor], max_new_tokens: int | list[int] = 1000,
                      settings: GenerationSettings | None = None, stop_check_every: int = 8,
                      static_cache: bool = True) -> list[torch.Tensor]:
    """Speech tokens for several utterances in the same voice, decoded together: one forward pass per step for
    all of them (CFG pairs side by side), so a step costs little more than one utterance's while decoding is bound
    by reading the weights. Prompts of different lengths are padded on the left and masked; each utterance stops
    at its own stop token or budget (`max_new_tokens`, one for all or one each). Without upstream's alignment
    heuristics (they follow one utterance): with them off, one utterance alone is exactly `fast_decode`; in a batch
    the random draws interleave, so tokens match single runs only where sampling is deterministic (e.g. `min_p=1`,
    greedy). Returns one (1, N_i) tensor per text."""
    settings = settings or UPSTREAM_V2
    budgets = [max_new_tokens] * len(texts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != len(texts) or not texts:
        raise ValueError(f"{len(texts)} texts and {len(budgets)} token budgets: give one budget or one per text.")
    embeds, len_cond, pads = _prefix(t3, t3_cond, texts, settings)
    for n, generated, _ in _decode_steps(t3, embeds, pads, budgets, settings, stop_check_every, static_cache, None,
                                         len_cond):
        pass
    return [_cut(generated[row: row + 1, 1: min(n, budget) + 1], t3.hp.stop_speech_token)
            for row, budget in enumerate(budgets)]


def cfg_rows(settings: GenerationSettings) -> int:
    """Backbone rows per utterance: the conditional and CFG's unconditional, or the conditional alone when
    `cfg_weight` is 0. There `cond + 0 * (cond - uncond)` is `cond`: the unconditional row cannot change a logit,
    so leaving it out is exact and halves the backbone's work (upstream's multilingual model computes it anyway)."""
    return 2 if settings.cfg_weight != 0 else 1


def _prefix(t3, t3_cond, texts, settings) -> tuple[torch.Tensor, int, list[int]]:
    """The utterances' prompt embeddings (`cfg_rows` each), left-padded to one length: (rows, L, D), the
    conditioning's length and each text's padding."""
    device, dtype = t3.speech_emb.weight.device, t3.speech_emb.weight.dtype
    cond = cast_cond(t3_cond, device, dtype)
    rows, len_cond = [], 0
    for text in texts:  # row 2i is the conditional, 2i + 1 CFG's unconditional (text zeroed by upstream)
        text = torch.atleast_2d(text).to(device)
        embeds, len_cond = prefix_embeds(t3, cond, text.expand(cfg_rows(settings), -1), settings.cfg_weight)
        rows.append(embeds.to(dtype))
    longest = max(row.shape[1] for row in rows)
    padded = [nn.functional.pad(row, (0, 0, longest - row.shape[1], 0)) for row in rows]
    return torch.cat(padded), len_cond, [longest - row.shape[1] for row in rows]


@contextlib.contextmanager
def _upstream_alignment(tfmr, text_slice: tuple[int, int], eos: int):
    """Upstream's `AlignmentStreamAnalyzer` for one utterance, in a cheaper form: the analyzer switches the whole
    backbone to eager attention with attention outputs (every layer materialises its attention maps at every
    step), but it reads three heads of layers 9, 12 and 13 only; here those three layers run eager attention and
    the rest keep SDPA. Its hooks (which upstream leaves for good) and the switch are undone when the utterance is
    done."""
    from chatterbox.models.t3.inference.alignment_stream_analyzer import (
        LLAMA_ALIGNED_HEADS,
        AlignmentStreamAnalyzer,
    )

    config = tfmr.config
    attention = [layer.self_attn for layer in tfmr.layers]
    with forward_hooks_removed(attention):
        with attention_implementation(config):  # (the analyzer switches the whole backbone)
            analyzer = AlignmentStreamAnalyzer(tfmr, None, text_tokens_slice=text_slice, alignment_layer_idx=9,
                                               eos_idx=eos)
        eager = with_attention_implementation(config, "eager")
        try:
            for layer, _ in LLAMA_ALIGNED_HEADS:  # the attention maps the analyzer's hooks read come from these alone
                attention[layer].config = eager
            yield analyzer
        finally:
            for layer in attention:
                layer.config = config


def _cut(tokens: torch.Tensor, stop: int) -> torch.Tensor:
    """Tokens up to and including the first stop token."""
    stops = (tokens[0] == stop).nonzero()
    return tokens[:, : int(stops[0]) + 1] if len(stops) else tokens


@torch.inference_mode()
def stream_decode(t3, t3_cond, text_tokens: torch.Tensor, max_new_tokens: int = 1000,
                  settings: GenerationSettings | None = None, chunk_tokens: int = 25, stop_check_every: int = 8,
                  static_cache: bool = True, alignment: bool | None = None,
                  first_chunk_tokens: int | None = None) -> Iterator[tuple[torch.Tensor, bool]]:
    """One utterance's tokens, handed over while it decodes: yields (new tokens (1, k), finished) once at least
    `chunk_tokens` new ones are there (`first_chunk_tokens` for the first chunk, default `chunk_tokens`: a small
    first chunk brings the first audio sooner), at the next stop check, and the rest with finished=True. Joined,
    they are `fast_decode`'s (which is this with one chunk)."""
    settings = settings or UPSTREAM_V2
    embeds, len_cond, pads = _prefix(t3, t3_cond, [text_tokens], settings)
    with contextlib.ExitStack() as stack:
        analyzer = None
        if alignment is not False and runs_alignment(t3):
            text_slice = (len_cond, len_cond + torch.atleast_2d(text_tokens).size(-1))
            analyzer = stack.enter_context(_upstream_alignment(t3.tfmr, text_slice, t3.hp.stop_speech_token))
        yield from _handed_over(t3, _decode_steps(t3, embeds, pads, [max_new_tokens], settings, stop_check_every,
                                                  static_cache, analyzer, len_cond), max_new_tokens, chunk_tokens,
                                first_chunk_tokens or chunk_tokens)


def _handed_over(t3, steps, max_new_tokens: int, chunk_tokens: int,
                 first_chunk_tokens: int) -> Iterator[tuple[torch.Tensor, bool]]:
    handed = 0
    for n, generated, finished in steps:
        # (a stop token ends the loop: its window comes last)
        if not finished and n - handed >= (chunk_tokens if handed else first_chunk_tokens):
            yield generated[:, handed + 1: n + 1], False
            handed = n
    yield _cut(generated[:, 1: min(n, max_new_tokens) + 1], t3.hp.stop_speech_token)[:, handed:], True


def _decode_steps(t3, embeds, pads, budgets, settings, stop_check_every, static_cache, analyzer,
                  len_cond: int = 0) -> Iterator[tuple[int, torch.Tensor, bool]]:
    """The decoding loop. Yields (steps done, generated, finished) after the prefill, at every stop check and at
    the end; `generated` (rows, 1 + steps) starts with the start token and is filled in place. `len_cond`: the
    conditioning's length at the start of every row (an engine computes it once per voice)."""
    hp = t3.hp
    device, dtype = embeds.device, embeds.dtype
    batch, steps_max = len(pads), max(budgets)
    pair = embeds.shape[0] // batch  # `cfg_rows`
    # The position embeddings of every speech step, looked up once.
    step_pos = t3.speech_pos_emb.get_fixed_embedding(torch.arange(1, steps_max + 1, device=device))[0].to(dtype)
    penalty, min_p, top_p = _processors(settings)
    generated = torch.full((batch, steps_max + 1), hp.start_speech_token, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    cfg = torch.as_tensor(settings.cfg_weight, device=device, dtype=torch.float32)
    every = 1 if analyzer is not None else stop_check_every  # the analyzer syncs every step anyway
    engine = getattr(t3, "engine", None)
    backbone = (_EngineSteps(engine, embeds, pads, steps_max, len_cond) if engine is not None
                else _BackboneSteps(t3.tfmr, t3.speech_head, embeds, pads, steps_max,
                                    static_cache and analyzer is None, analyzer is not None))
    logits_all = backbone.logits
    n = 0
    yield n, generated, False
    for step in range(steps_max):
        if pair == 2:
            logits = logits_all.view(batch, 2, -1)
            logits = logits[:, 0] + cfg * (logits[:, 0] - logits[:, 1])
        else:
            logits = logits_all.clone()  # (the processors below may write in place)
        seen = generated[:, : step + 1]
        forced = step < settings.min_new_tokens
        if analyzer is not None:
            # (the analyzer writes into the logits it gets; while the stop is held back, its verdict is set aside)
            judged = analyzer.step(logits.clone() if forced else logits, next_token=int(seen[0, -1]))
            logits = logits if forced else judged
        if forced:
            # Held back from stopping, the draw is among speech tokens only: not the stop token, nor T3's other
            # special ids, which S3Gen would drop. The analyzer's forced stop (every logit but the stop token's at
            # -2**15) is not taken either: with the stop token masked it would leave a uniform draw over all ids.
            logits[:, SPEECH_VOCAB_SIZE:] = -float("inf")
        logits = penalty(seen, logits)
        if settings.temperature != 1.0:
            logits = logits / settings.temperature
        logits = top_p(seen, min_p(seen, logits))
        next_token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)
        generated[:, step + 1] = next_token[:, 0]
        done |= next_token[:, 0] == hp.stop_speech_token
        n = step + 1
        if n % every == 0 or n == steps_max:  # the only host sync of the loop
            if bool(done.all()) or all(n >= budget for budget in budgets):
                break
            yield n, generated, False
        embed = (t3.speech_emb(next_token) + step_pos[step]).to(dtype).repeat_interleave(pair, dim=0)
        logits_all = backbone.step(embed, step)
    yield n, generated, True


class _BackboneSteps:
    """T3's own backbone (a transformers Llama) and speech head over the CFG rows: the prefill, then one token per
    row and step; each gives the rows' next-token logits (fp32).
    Left padding: pads are never attended to (a pad attends to itself, so no row is fully masked), and each row's
    positions start at its first real token. Without padding no mask is needed (as upstream)."""

    def __init__(self, tfmr, head, embeds, pads, steps_max: int, static_cache: bool, eager_mask: bool):
        from transformers import DynamicCache, StaticCache

        device, dtype = embeds.device, embeds.dtype
        prefix = embeds.shape[1]
        total = prefix + steps_max + 1
        self.tfmr, self.head, self.prefix, self.any_pads = tfmr, head, prefix, any(pads)
        cache = StaticCache(config=tfmr.config, max_cache_len=total) if static_cache else DynamicCache()
        self.positions = positions = torch.arange(total, device=device)
        rows_per_text = embeds.shape[0] // len(pads)
        self.pad = pad = torch.tensor(pads, device=device).repeat_interleave(rows_per_text)[:, None]  # per row
        causal = positions[None, :prefix] <= positions[:prefix, None]
        mask = None
        if self.any_pads:
            self.key_valid = positions[None, :] >= pad
            mask = (causal[None] & (self.key_valid[:, None, :prefix]
                                    | torch.eye(prefix, dtype=torch.bool, device=device)))
            mask = nn.functional.pad(mask, (0, total - prefix))[:, None]  # (rows, 1, prefix, cache length)
        if eager_mask:  # the analyzer's eager layers need the causal mask spelled out (SDPA alone would skip it)
            additive = torch.zeros(causal.shape, dtype=dtype, device=device).masked_fill(~causal,
                                                                                          torch.finfo(dtype).min)
            mask = additive[None, None].expand(embeds.shape[0], 1, -1, -1)
        self.out = tfmr(inputs_embeds=embeds, cache=cache, attention_mask=mask,
                        position_ids=(positions[None, :prefix] - pad).clamp_min(0), use_cache=True, return_dict=True)
        self.logits = head(self.out.last_hidden_state[:, -1]).float()

    def step(self, embed: torch.Tensor, step: int) -> torch.Tensor:
        step_mask = None
        if self.any_pads:
            step_mask = (self.key_valid & (self.positions <= self.prefix + step))[:, None, None]
        self.out = self.tfmr(inputs_embeds=embed, cache=self.out.cache, attention_mask=step_mask,
                             position_ids=self.positions[self.prefix + step] - self.pad, use_cache=True,
                             return_dict=True)
        return self.head(self.out.last_hidden_state[:, -1]).float()


class _EngineSteps:
    """The same on an inference engine (`cpu_fast.engine`), which computes the logits itself: each CFG row is its
    own sequence, so pads are left out rather than masked."""

    def __init__(self, engine, embeds, pads, steps_max: int, shared: int):
        self.engine, self.device = engine, embeds.device
        self.logits = engine.prefill(embeds, pads, steps_max, shared).to(self.device)

    def step(self, embed: torch.Tensor, step: int) -> torch.Tensor:
        return self.engine.step(embed[:, 0]).to(self.device)

