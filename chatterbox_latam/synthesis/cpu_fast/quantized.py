"""The quantised Linear layers T3's Llama backbone gets on the CPU (`cpu_t3`): int8 or 4-bit weights with bf16
activations (`int8-wo`, `int4-wo`), dynamic int8 (`int8`), and bf16 weights with prompts prefilled at fp32 on a CPU
that only emulates bf16 (`bf16` there).

The int8 / int4 weight-only layers call PyTorch's CPU kernels directly, and dynamic int8 is
`torch.ao.quantization.quantize_dynamic`, rather than torchao's configs through `quantize_`: on two CPU cores
torchao 0.18 is slower for each (one decode step's Linear layers at full size: int8 weight-only 153 ms against
45 ms here, dynamic int8 89 ms against 30 ms) and its int4 weight-only config has no CPU path (its packing formats
need CUDA, XPU or mslk). `make benchmark-quantized` (`benchmarks/quantized_linear.py`) measures both again."""

from __future__ import annotations

import abc

import torch
from torch import nn

from ...compat import int4_pack_for_cpu, int4_weight_only_mm, int8_weight_only_mm
from ..decoding import PREFILL_ROWS


def prefill_dtype() -> torch.dtype:
    """The precision a prompt's many rows are computed in: bf16 where the CPU computes it natively, fp32 elsewhere
    (an AVX2-only CPU emulates bf16 matrix products: a full-size prefill took 18.5 s in bf16 against 3.4 s in fp32)."""
    from ...utils import cpu_has_bf16

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
        return int8_weight_only_mm(x, self.weight_int8, self.scales)


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
        self.register_buffer("weight_int4", int4_pack_for_cpu(q.to(torch.int32), 1))
        self.register_buffer("scales_and_offsets",
                             torch.stack([scales.t(), (low + 8 * scales).t()], -1).contiguous().to(torch.bfloat16))
        self.group_size = group_size

    @staticmethod
    def fits(linear: nn.Linear, group_size: int = 32) -> bool:
        return linear.in_features % group_size == 0 and linear.out_features % 16 == 0

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        return int4_weight_only_mm(x, self.weight_int4, self.group_size, self.scales_and_offsets)


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


def cpu_t3(t3: nn.Module, mode: str) -> nn.Module:
    """`t3` (a copy on the CPU with any LoRA folded in: changed in place) with its backbone's Linear layers for `mode`:
    'bf16', 'int8', 'int8-wo' or 'int4-wo'. The Llama backbone's Linear layers hold nearly all the weights; the heads
    and embeddings stay fp32, except under bf16 and the weight-only modes, which cast the whole T3 to bf16."""
    if mode == "bf16":
        t3 = t3.to(torch.bfloat16)
        if prefill_dtype() != torch.bfloat16:
            _replace_linears(t3.tfmr, Bf16Linear)
        return t3
    if mode in WEIGHT_ONLY:
        t3 = t3.to(torch.bfloat16)
        _replace_linears(t3.tfmr, WEIGHT_ONLY[mode])
        return t3
    if mode == "int8":
        t3.tfmr = torch.ao.quantization.quantize_dynamic(t3.tfmr, {nn.Linear}, dtype=torch.qint8)
        return t3
    raise ValueError(f"mode={mode!r} has no quantised CPU layers: use bf16, int8, {' or '.join(WEIGHT_ONLY)}.")
