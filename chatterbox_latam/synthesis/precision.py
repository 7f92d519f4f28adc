"""T3 at a chosen precision (`MODES`): bf16 weights, dynamic int8 Linear layers, or int8 / int4 weights with bf16
activations on the CPU, or the backbone on llama.cpp at 4 or 8 bits (`synthesis.engine`), and the `auto` guard that
picks the fastest mode whose teacher-forced agreement with fp32 holds up on the model at hand (`choose_mode`).

The int8 / int4 weight-only layers call PyTorch's CPU kernels directly, and dynamic int8 is
`torch.ao.quantization.quantize_dynamic`, rather than torchao's configs through `quantize_`: on two CPU cores
torchao 0.18 is slower for each (one decode step's Linear layers at full size: int8 weight-only 153 ms against
45 ms here, dynamic int8 89 ms against 30 ms) and its int4 weight-only config has no CPU path (its packing formats
need CUDA, XPU or mslk). `make benchmark-quantized` (`benchmarks/quantized_linear.py`) measures both again."""

from __future__ import annotations

import abc
import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..constants import CPU_ONLY, ENGINE_MODES, MODES
from .decoding import (
    PREFILL_ROWS,
    SamplingSettings,
    cast_cond,
    fast_decode,
    prefix_embeds,
    runs_alignment,
)


def prefill_dtype() -> torch.dtype:
    """The precision a prompt's many rows are computed in: bf16 where the CPU computes it natively, fp32 elsewhere
    (an AVX2-only CPU emulates bf16 matrix products: a full-size prefill took 18.5 s in bf16 against 3.4 s in fp32)."""
    from ..utils import cpu_has_bf16

    return torch.bfloat16 if cpu_has_bf16() else torch.float32


class _WeightOnlyLinear(nn.Module, metaclass=abc.ABCMeta):
    """A Linear layer whose weight is stored quantised, with bf16 activations; decoding's few rows go through
    `_matmul` (the subclass's kernel), a prompt's many rows through a copy of the weight in `prefill_dtype()`
    (`PREFILL_ROWS`)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))
        self.register_buffer("prefill_weight", linear.weight.detach().to(prefill_dtype()))
        self.out_features = linear.out_features

    @abc.abstractmethod
    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, in_features) bf16 activations times the stored weight: the subclass's kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if x.numel() // shape[-1] > PREFILL_ROWS:
            weight = self.prefill_weight
            bias = None if self.bias is None else self.bias.to(weight.dtype)
            return nn.functional.linear(x.to(weight.dtype), weight, bias).to(torch.bfloat16)
        out = self._matmul(x.reshape(-1, shape[-1]).to(torch.bfloat16))
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*shape[:-1], self.out_features)


class WeightOnlyInt8Linear(_WeightOnlyLinear):
    """int8 weights (one scale per output row): a quarter of the fp32 weight bytes per step. Runs on PyTorch's CPU
    weight-only int8 kernel (`_weight_int8pack_mm`, the one torchao's int8 weight-only mode uses)."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        self.register_buffer("weight_int8", torch.round(weight / scales[:, None]).clamp(-128, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(torch.bfloat16))

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(x, self.weight_int8, self.scales)


class WeightOnlyInt4Linear(_WeightOnlyLinear):
    """4-bit weights (asymmetric, one bf16 scale and offset per `group_size` inputs of each row): an eighth of the
    fp32 weight bytes. Runs on PyTorch's CPU 4-bit kernel (`_weight_int4pack_mm_for_cpu`, the one torchao's int4
    weight-only CPU layout uses), whose dequantisation is `(q - 8) * scale + offset`."""

    def __init__(self, linear: nn.Linear, group_size: int = 32):
        super().__init__(linear)
        weight = linear.weight.detach().float()
        rows, columns = weight.shape
        groups = weight.reshape(rows, columns // group_size, group_size)
        low, high = groups.amin(-1), groups.amax(-1)
        scales = (high - low).clamp_min(1e-12) / 15
        q = torch.round((groups - low[..., None]) / scales[..., None]).clamp(0, 15).reshape(rows, columns)
        self.register_buffer("weight_int4", torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1))
        self.register_buffer("scales_and_offsets",
                             torch.stack([scales.t(), (low + 8 * scales).t()], -1).contiguous().to(torch.bfloat16))
        self.group_size = group_size

    @staticmethod
    def fits(linear: nn.Linear, group_size: int = 32) -> bool:
        return linear.in_features % group_size == 0 and linear.out_features % 16 == 0

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(x, self.weight_int4, self.group_size, self.scales_and_offsets)


class Bf16Linear(_WeightOnlyLinear):
    """bf16 weights for decoding's few rows, and the prompt's prefill from a copy in `prefill_dtype()`: the `bf16`
    mode's layers on a CPU that only emulates bf16, where decoding still gains from reading half the bytes but a
    prompt's many rows would take several times fp32's time."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear)
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16))

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight)


WEIGHT_ONLY = {"int8-wo": WeightOnlyInt8Linear, "int4-wo": WeightOnlyInt4Linear}


def _replace_linears(module: nn.Module, layer: type[_WeightOnlyLinear]) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            fits = layer is not WeightOnlyInt4Linear or WeightOnlyInt4Linear.fits(child)
            # a layer the 4-bit kernel cannot take keeps 8 bits
            setattr(module, name, (layer if fits else WeightOnlyInt8Linear)(child))
        else:
            _replace_linears(child, layer)


def t3_for_mode(t3: nn.Module, mode: str) -> nn.Module:
    """A copy of T3 prepared for `mode` (fp32 returns T3 itself). The int8 and int4 modes need the CPU."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {MODES}.")
    if mode == "fp32":
        return t3
    if mode in ENGINE_MODES:
        if next(t3.parameters()).device.type != "cpu":
            raise ValueError(f"mode={mode!r} runs on the CPU; on GPU use bf16.")
        from .engine import engine_t3

        return engine_t3(t3, mode)
    fast = copy.deepcopy(t3)
    if hasattr(fast, "merge_and_unload"):  # LoRA adapters (the active one) folded in before the cast
        fast = fast.merge_and_unload()
    if mode == "bf16":
        fast = fast.to(torch.bfloat16)
        if next(t3.parameters()).device.type == "cpu" and prefill_dtype() != torch.bfloat16:
            _replace_linears(fast.tfmr, Bf16Linear)
        return fast
    if mode in CPU_ONLY and next(t3.parameters()).device.type != "cpu":
        raise ValueError(f"mode={mode!r} runs on the CPU; on GPU use bf16.")
    if mode in WEIGHT_ONLY:
        fast = fast.to(torch.bfloat16)
        _replace_linears(fast.tfmr, WEIGHT_ONLY[mode])
        return fast
    # The Llama backbone's Linear layers hold nearly all the weights; heads and embeddings stay fp32.
    fast.tfmr = torch.ao.quantization.quantize_dynamic(fast.tfmr, {nn.Linear}, dtype=torch.qint8)
    return fast


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
    """The modes that can run here: the CPU-only ones on the CPU, llama.cpp's when llama-cpp-python is installed."""
    from .engine import available

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
                settings: SamplingSettings | None = None,
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
    settings = dataclasses.replace(settings or SamplingSettings(), min_new_tokens=tokens)
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


def _choice_key(t3, t3_cond, text_tokens, candidates, min_agreement, tokens, settings: SamplingSettings,
                alignment: bool) -> str:
    """What a measured choice depends on: the machine (CPU, flags, threads), the libraries, the weights, the
    question (text, voice, candidates, threshold, steps, sampling settings, alignment heuristics)."""
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, version

    from ..utils import cpu_info
    from .engine import weights_key

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

