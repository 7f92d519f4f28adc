"""Quantised Linear layers on the CPU: the project's weight-only kernels against torchao's maintained configs.

    python benchmarks/quantized_linear.py [--layers 30] [--rows 2] [--repeats 20]

One T3 decode step's Linear layers at full size (Llama backbone: per layer q, k, v, o 1024x1024, gate and up
4096x1024, down 1024x4096; 30 layers), fed `--rows` rows (2: a sentence's conditional and unconditional CFG rows),
timed per implementation of each mode:
- int8-wo: `WeightOnlyInt8Linear` (PyTorch's `_weight_int8pack_mm`) / torchao `Int8WeightOnlyConfig`;
- int4-wo: `WeightOnlyInt4Linear` (`_weight_int4pack_mm_for_cpu`) / torchao `Int4WeightOnlyConfig` (each packing
  format; on the CPU they need CUDA, XPU or mslk, which is printed);
- int8 (dynamic): `torch.ao.quantization.quantize_dynamic` / torchao `Int8DynamicActivationInt8WeightConfig`;
with bf16 and fp32 weights as the baselines, and each one's error against fp32. The last lines say which
implementation of each mode is faster here.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from chatterbox_latam.synthesis.cpu_fast.quantized import (
    WeightOnlyInt4Linear,
    WeightOnlyInt8Linear,
)
from chatterbox_latam.utils import cpu_description

SHAPES = {"q_proj": (1024, 1024), "k_proj": (1024, 1024), "v_proj": (1024, 1024), "o_proj": (1024, 1024),
          "gate_proj": (4096, 1024), "up_proj": (4096, 1024), "down_proj": (1024, 4096)}


class Layers(nn.Module):
    """The Linear layers of `n` Llama blocks, run one after another on inputs of their own width."""

    def __init__(self, n: int):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleDict({name: nn.Linear(i, o, bias=False) for name, (o, i) in
                                                   SHAPES.items()}) for _ in range(n))


def _in_features(layer: nn.Module) -> int:
    for attribute in ("in_features", "prefill_weight"):
        if hasattr(layer, attribute):
            value = getattr(layer, attribute)
            return value if isinstance(value, int) else value.shape[1]
    return layer.weight.shape[1]


def step(model: Layers, inputs: dict[int, torch.Tensor]) -> torch.Tensor:
    return torch.cat([layer(inputs[_in_features(layer)]).float().flatten()
                      for block in model.blocks for layer in block.values()])


def ours(model: Layers, kind: type[nn.Module]) -> Layers:
    out = copy.deepcopy(model).to(torch.bfloat16)
    for block in out.blocks:
        for name in list(block.keys()):
            block[name] = kind(block[name])
    return out


def torchao(model: Layers, config, dtype: torch.dtype) -> Layers:
    from torchao.quantization import quantize_

    out = copy.deepcopy(model).to(dtype)
    quantize_(out, config)
    return out


def timed(model: Layers, inputs: dict[int, torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        for _ in range(3):
            result = step(model, inputs)
        start = time.perf_counter()
        for _ in range(repeats):
            step(model, inputs)
        return (time.perf_counter() - start) / repeats * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Layers(args.layers).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = {width: torch.randn(args.rows, width) for width in (1024, 4096)}
    xb = {width: v.to(torch.bfloat16) for width, v in x.items()}
    print(f"{cpu_description()}\ntorch {torch.__version__}, {args.layers} layers x {len(SHAPES)} Linear, "
          f"{args.rows} rows")
    fp32_ms, reference = timed(model, x, args.repeats)
    rows = [("fp32", "torch", fp32_ms, 0.0)]

    def error(result: torch.Tensor) -> float:
        return float((result - reference).abs().max() / reference.abs().max())

    bf16_ms, bf16 = timed(copy.deepcopy(model).to(torch.bfloat16), xb, args.repeats)
    rows.append(("bf16", "torch", bf16_ms, error(bf16)))
    candidates = {
        "int8-wo": [("project (_weight_int8pack_mm)", lambda: ours(model, WeightOnlyInt8Linear), xb)],
        "int4-wo": [("project (_weight_int4pack_mm_for_cpu)", lambda: ours(model, WeightOnlyInt4Linear), xb)],
        "int8": [("torch.ao quantize_dynamic", lambda: torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8), x)],
    }
    try:
        import torchao as ao
        from torchao.quantization import (
            Int4WeightOnlyConfig,
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
        )
        from torchao.quantization.quantize_.workflows.int4.int4_packing_format import (
            Int4PackingFormat,
        )

        candidates["int8-wo"].append((f"torchao {ao.__version__} Int8WeightOnlyConfig",
                                      lambda: torchao(model, Int8WeightOnlyConfig(), torch.bfloat16), xb))
        for packing in Int4PackingFormat:
            candidates["int4-wo"].append((f"torchao {ao.__version__} Int4WeightOnlyConfig({packing.value})",
                                          lambda packing=packing: torchao(model, Int4WeightOnlyConfig(
                                              group_size=32, int4_packing_format=packing), torch.bfloat16), xb))
        candidates["int8"].append((f"torchao {ao.__version__} Int8DynamicActivationInt8WeightConfig",
                                   lambda: torchao(model, Int8DynamicActivationInt8WeightConfig(), torch.float32),
                                   x))
    except ImportError as missing:
        print(f"torchao not installed ({missing}): only the project's kernels are timed")
    best = {}
    for mode, implementations in candidates.items():
        for name, build, inputs in implementations:
            try:
                ms, result = timed(build(), inputs, args.repeats)
            except Exception as failure:  # noqa: BLE001 - a config that cannot run here is reported, not fatal
                print(f"{mode:8s} {name}: cannot run here ({type(failure).__name__}: {str(failure)[:90]})")
                continue
            rows.append((mode, name, ms, error(result)))
            if mode not in best or ms < best[mode][1]:
                best[mode] = (name, ms)
    print("\n| mode | implementation | ms per step | x fp32 | max error vs fp32 |\n|---|---|---:|---:|---:|")
    for mode, name, ms, err in rows:
        print(f"| {mode} | {name} | {ms:.1f} | {fp32_ms / ms:.2f} | {err:.2e} |")
    for mode, (name, ms) in best.items():
        print(f"fastest {mode}: {name} ({ms:.1f} ms per step)")


if __name__ == "__main__":
    main()
