"""T3's Llama backbone as a GGUF file, for llama.cpp (`cpu_fast.engine`) and for llama.cpp users (`merged_gguf`:
`training/merge.py --gguf`).

T3 is a plain Llama (30 layers, width 1024, Llama-3 RoPE scaling) between its own input and output layers: the
input is a sum of embeddings (conditioning, text, speech, learned positions) that no token id can stand for, and
the output is the speech head. The file holds the backbone as llama.cpp's `llama` architecture, with
- the speech head as the output layer (`output.weight`: 8194 speech logits) and the speech embedding as the token
  embedding (`token_embd.weight`), so the vocabulary is "none" with 8194 dummy tokens;
- q/k projections in llama.cpp's rotary layout (HF Llama rotates halves, llama.cpp pairs: the rows are permuted,
  as llama.cpp's own converter does), and the Llama-3 frequency factors as `rope_freqs.weight`.
A caller feeds T3's input embeddings (llama.cpp's embeddings input) and reads the final normed hidden states or the
speech logits. Weights are written as f32, f16, q8_0 or q4_0 by the `gguf` package (llama.cpp's own Python
writer and quantisers, the cpu-fast extra); norms stay f32 and the speech head keeps 8 bits or more.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from ...constants import GGUF_TYPES
from . import missing_extra


def _gguf(what: str):
    """The `gguf` package, or `missing_extra`'s error for `what` where it is not installed."""
    try:
        import gguf
    except ImportError as error:
        raise missing_extra(what) from error
    return gguf


def gguf_name(weights: str) -> str:
    """The file name of T3's GGUF at `weights` in a merged model folder."""
    return f"t3-{weights}.gguf"


def rope_parameters(config) -> dict:
    """The HF config's RoPE settings (transformers 5: `rope_parameters`, with `rope_theta` inside; 4: `rope_scaling`
    and `rope_theta` beside it)."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    rope.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return rope


def llama3_rope_factors(config) -> np.ndarray:
    """Llama-3 RoPE scaling as llama.cpp takes it (`rope_freqs.weight`): one divisor per frequency, from the HF
    config's RoPE settings (the same piecewise rule transformers' `_compute_llama3_parameters` applies)."""
    scaling = rope_parameters(config)
    dim = config.head_dim
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_context / low, old_context / high
    factors = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * scaling["rope_theta"] ** (i / dim)
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def _rotary_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """q/k rows from HF's rotate-half order (first half, second half of each head) to llama.cpp's pairs."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def backbone_tensors(t3) -> dict[str, torch.Tensor]:
    """GGUF name -> fp32 tensor for T3's backbone, speech head and speech embedding (LoRA must be merged first)."""
    import gguf

    config = t3.tfmr.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in t3.tfmr.state_dict().items():
        if "rotary_emb" in name:
            continue
        mapped = names.get_name("model." + name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise ValueError(f"T3's backbone holds {name}, which has no llama.cpp name: is this a Llama T3?")
        value = value.detach().float().cpu()
        if name.endswith("q_proj.weight"):
            value = _rotary_rows(value, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            value = _rotary_rows(value, config.num_key_value_heads)
        tensors[mapped] = value
    tensors["output.weight"] = t3.speech_head.weight.detach().float().cpu()
    tensors["token_embd.weight"] = t3.speech_emb.weight.detach().float().cpu()
    if rope_parameters(config).get("rope_type") == "llama3":
        tensors["rope_freqs.weight"] = torch.from_numpy(llama3_rope_factors(config))
    return tensors


def _tensor_type(name: str, weights: str):
    import gguf

    types = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}
    if name.endswith("norm.weight") or name == "rope_freqs.weight":
        return types["f32"]
    if name in ("output.weight", "token_embd.weight") and weights == "q4_0":
        return types["q8_0"]  # the speech head decides every token: it keeps 8 bits, as llama.cpp keeps its output
    return types[weights]


def write_t3_gguf(t3, path: str | os.PathLike, weights: str = "q4_0", name: str = "chatterbox-t3") -> Path:
    """Writes T3's backbone (see the module docstring) to `path` at `weights` (`GGUF_TYPES`), atomically."""
    from ...utils import atomic_path

    gguf = _gguf("Writing T3 as a GGUF")

    if weights not in GGUF_TYPES:
        raise ValueError(f"weights={weights!r}: use one of {GGUF_TYPES}.")
    if getattr(t3.tfmr.config, "model_type", "llama") != "llama":
        raise ValueError("Only a Llama T3 (the multilingual and English Chatterbox) can be written as a llama GGUF.")
    config = t3.tfmr.config
    path = Path(path)
    with atomic_path(path) as staging:
        writer = gguf.GGUFWriter(str(staging), "llama")
        writer.add_name(name)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(config.num_attention_heads)
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_rope_dimension_count(config.head_dim)
        writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(int(t3.speech_head.weight.shape[0]))
        writer.add_tokenizer_model("none")
        writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[weights])
        for tensor_name, value in backbone_tensors(t3).items():
            qtype = _tensor_type(tensor_name, weights)
            array = value.numpy()
            if qtype == gguf.GGMLQuantizationType.F16:
                array = array.astype(np.float16)
            elif qtype != gguf.GGMLQuantizationType.F32:
                array = gguf.quants.quantize(array, qtype)
            writer.add_tensor(tensor_name, array, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def merged_gguf(weights: str):
    """`models.merge.merge_adapter`'s `extra_files` for `training/merge.py --gguf`: the merged T3, in fp32 whatever
    dtype its safetensors get, written as `t3-<weights>.gguf` beside them and named in config.json (`gguf`).
    Without the cpu-fast extra it fails here, before the merge, not after it."""
    if weights not in GGUF_TYPES:
        raise ValueError(f"gguf={weights!r}: use one of {GGUF_TYPES}.")
    _gguf(f"--gguf {weights}")

    def write(model, folder: Path, config: dict) -> dict:
        name = f"chatterbox-es-latam-t3-{config.get('accent') or 'es'}"
        write_t3_gguf(model.t3, folder / gguf_name(weights), weights, name=name)
        return {"gguf": gguf_name(weights)}

    return write
