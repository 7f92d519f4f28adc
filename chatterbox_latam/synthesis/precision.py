"""T3 at a chosen precision (`MODES`, `t3_for_mode`): fp32 (upstream's tokens), bf16, and on the CPU int8 / int4
weights, dynamic int8 or the backbone on llama.cpp at 4 or 8 bits (their layers and engine are in `cpu_fast`); and
the `auto` guard, on the CPU and the GPU alike, that picks the fastest mode whose teacher-forced agreement with
fp32 holds up on the model at hand (`choose_mode`, `teacher_forced_agreement`), remembered per machine."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..constants import CPU_ONLY, ENGINE_MODES, MODES
from .config import GenerationSettings
from .decoding import (
    UPSTREAM_V2,
    cast_cond,
    fast_decode,
    prefix_embeds,
    runs_alignment,
)


def t3_for_mode(t3: nn.Module, mode: str) -> nn.Module:
    """A copy of T3 prepared for `mode` (fp32 returns T3 itself). The int8, int4 and llama.cpp modes need the CPU
    (`cpu_fast`); the llama.cpp ones the cpu-fast extra too."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {MODES}.")
    if mode == "fp32":
        return t3
    on_cpu = next(t3.parameters()).device.type == "cpu"
    if mode in CPU_ONLY and not on_cpu:
        raise ValueError(f"mode={mode!r} runs on the CPU; on GPU use bf16.")
    if mode in ENGINE_MODES:
        from .cpu_fast.engine import engine_t3

        return engine_t3(t3, mode)
    fast = copy.deepcopy(t3)
    if hasattr(fast, "merge_and_unload"):  # LoRA adapters (the active one) folded in before the cast
        fast = fast.merge_and_unload()
    if not on_cpu:  # bf16 on a GPU: the cast alone
        return fast.to(torch.bfloat16)
    from .cpu_fast.quantized import cpu_t3

    return cpu_t3(fast, mode)


@torch.inference_mode()
def teacher_forced_agreement(reference_t3, t3, t3_cond, text_tokens: torch.Tensor, speech_tokens: torch.Tensor,
                             cfg_weight: float = 0.5) -> float:
    """Share of steps where `t3` (e.g. a bf16 or int8 copy) picks the same most likely next token as
    `reference_t3` (fp32), both fed the same speech tokens (`speech_tokens`: (1, N), e.g. fp32's own output).

    Free-running comparisons drift apart after the first near-tie; feeding both the same tokens measures each
    step's decision on its own."""
    def argmaxes(model) -> torch.Tensor:
        dtype = model.speech_emb.weight.dtype
        cond = cast_cond(t3_cond, model.speech_emb.weight.device, dtype)
        prefix, _ = prefix_embeds(model, cond, torch.atleast_2d(text_tokens).expand(2, -1), cfg_weight)
        tokens = speech_tokens.to(prefix.device)[:, :-1]
        positions = torch.arange(1, tokens.shape[1] + 1, device=prefix.device)
        steps = model.speech_emb(tokens) + model.speech_pos_emb.get_fixed_embedding(positions)
        embeds = torch.cat([prefix, steps.to(dtype).expand(2, -1, -1)], dim=1)
        if getattr(model, "engine", None) is not None:  # it computes the speech logits itself
            logits = model.engine.forward(embeds)[:, prefix.shape[1] - 1:].to(embeds.device)
        else:
            hidden = model.tfmr(inputs_embeds=embeds.to(dtype), use_cache=False, return_dict=True).last_hidden_state
            logits = model.speech_head(hidden[:, prefix.shape[1] - 1:]).float()
        return (logits[0] + cfg_weight * (logits[0] - logits[1])).argmax(-1)

    return float((argmaxes(reference_t3) == argmaxes(t3)).float().mean())


@dataclass
class ModeReport:
    """One mode's measured speed and agreement with fp32 (what the quality guard decides on)."""

    mode: str
    tokens_per_second: float
    agreement: float
    holds_up: bool
    steps: int = 0
    """Decoding steps the agreement was judged on."""
    tokens: list[int] = dataclasses.field(default_factory=list)
    """fp32's report: the speech tokens fp32 decoded, on which every mode's agreement was judged (teacher-forced)."""


def available_modes(device: str = "cpu") -> tuple[str, ...]:
    """The modes that can run here: the CPU-only ones on the CPU, llama.cpp's where the cpu-fast extra is installed."""
    from .cpu_fast.engine import available

    engine = available()
    return tuple(m for m in MODES if not (m in CPU_ONLY and device != "cpu") and (engine or m not in ENGINE_MODES))


def auto_candidates(device: str = "cpu") -> tuple[str, ...]:
    """The modes `auto` chooses among: the available ones, without bf16 on a CPU that only emulates it
    (`utils.cpu_has_bf16`)."""
    from ..utils import cpu_has_bf16

    bf16 = device != "cpu" or cpu_has_bf16()
    return tuple(m for m in available_modes(device) if bf16 or m != "bf16")


AUTO_MIN_AGREEMENT = 0.95
"""The teacher-forced agreement with fp32 a mode needs for `auto` to choose it."""


def choose_mode(t3, t3_cond, text_tokens: torch.Tensor, candidates: tuple[str, ...] | None = None,
                min_agreement: float = AUTO_MIN_AGREEMENT, tokens: int = 64, cache: bool = False,
                settings: GenerationSettings | None = None,
                alignment: bool | None = None) -> tuple[str, list[ModeReport], nn.Module]:
    """The fastest mode whose teacher-forced agreement with fp32 is at least `min_agreement`, measured on the
    given conditioning and text (exactly `tokens` steps decoded per mode: the stop token is held back until then,
    and only speech tokens are drawn); fp32 when none holds up. Returns (mode, reports, that mode's prepared T3);
    fp32's report keeps the tokens fp32 decoded.

    `settings` and `alignment` decode as synthesis will (`fast_decode`'s: the sampling, e.g. the generation's
    repetition penalty, and upstream's alignment heuristics, None where they can run): a mode is judged on the
    tokens the model it serves decodes.

    A mode's speed is the time of the whole sentence's T3 work (the prompt's prefill and the decoding, as synthesis
    runs them); S3Gen's share does not depend on T3's mode, so this is also the end-to-end ranking. With `cache`,
    the choice is kept per machine, model and question (`utils.cache_dir()`/auto-modes.json) and reused: the
    measurement takes a minute or two at full size."""
    import time

    device = t3.speech_emb.weight.device.type
    candidates = candidates or auto_candidates(device)
    settings = dataclasses.replace(settings or UPSTREAM_V2, min_new_tokens=tokens)
    alignment = alignment is not False and runs_alignment(t3)
    key = _choice_key(t3, t3_cond, text_tokens, candidates, min_agreement, tokens, settings,
                      alignment) if cache else None
    if key is not None and (known := _known_choices().get(key)):
        return known["mode"], [ModeReport(**r) for r in known["reports"]], t3_for_mode(t3, known["mode"])
    reports, reference, best = [], None, None
    for mode in ("fp32", *[m for m in candidates if m != "fp32"]):
        model = t3_for_mode(t3, mode)
        fast_decode(model, t3_cond, text_tokens, 2, settings, alignment=alignment)  # warm-up
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            start = time.perf_counter()
            out = fast_decode(model, t3_cond, text_tokens, tokens, settings, alignment=alignment)
            seconds = time.perf_counter() - start
        reference = out if reference is None else reference
        agreement = 1.0 if mode == "fp32" else teacher_forced_agreement(t3, model, t3_cond, text_tokens, reference,
                                                                       settings.cfg_weight)
        holds_up = mode == "fp32" or agreement >= min_agreement  # fp32 is the reference: always available
        reports.append(ModeReport(mode, out.shape[1] / seconds, agreement, holds_up, reference.shape[1],
                                  reference[0].tolist() if mode == "fp32" else []))
        if holds_up and (best is None or reports[-1].tokens_per_second > best[0].tokens_per_second):
            best = (reports[-1], model)  # only the best so far is kept: each copy costs memory
        del model
    if key is not None:
        _remember_choice(key, best[0].mode, reports)
    return best[0].mode, reports, best[1]


AUTO_CACHE = "auto-modes.json"


def _choice_key(t3, t3_cond, text_tokens, candidates, min_agreement, tokens, settings: GenerationSettings,
                alignment: bool) -> str:
    """What a measured choice depends on: the machine (CPU, flags, threads), the libraries, the weights, the
    question (text, voice, candidates, threshold, steps, sampling settings, alignment heuristics)."""
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, version

    from ..utils import cpu_info
    from .cpu_fast.engine import weights_key

    try:
        engine = version("llama_cpp_python")
    except PackageNotFoundError:
        engine = None
    model, flags = cpu_info()
    prompt = t3_cond.cond_prompt_speech_tokens
    facts = [model, sorted(flags), torch.get_num_threads(), torch.__version__, engine, weights_key(t3),
             text_tokens.flatten().tolist(), t3_cond.speaker_emb.flatten()[:32].tolist(),
             None if prompt is None else prompt.flatten().tolist(),
             list(candidates), min_agreement, tokens, dataclasses.asdict(settings), alignment,
             str(t3.speech_emb.weight.device)]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:24]


def _known_choices() -> dict:
    import json

    from ..utils import cache_dir

    path = cache_dir() / AUTO_CACHE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _remember_choice(key: str, mode: str, reports: list[ModeReport]) -> None:
    import json
    from dataclasses import asdict

    from ..utils import cache_dir, write_atomic

    known = _known_choices()
    known[key] = {"mode": mode, "reports": [asdict(r) for r in reports]}
    write_atomic(cache_dir() / AUTO_CACHE, json.dumps(known, indent=1).encode())

