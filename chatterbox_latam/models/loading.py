"""One loader for every Chatterbox checkpoint the project meets.

The same functions load the real `ResembleAI/chatterbox` repository (by repo id or from a local snapshot), the
official Latin-American pack, and the tiny random-init checkpoint that tests and the demo build
(`chatterbox_latam.testing.tiny_model`). A checkpoint is a folder in one of `constants.LAYOUTS` (resolved by
`models.checkpoint`); an optional `config.json` beside the weights records reduced sizes, so a small model is built
from the same upstream classes with other widths and depths instead of a copy of their code.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..compat import computed_s3gen_buffers, register_llama_config
from .checkpoint import Checkpoint, resolve_checkpoint

logger = logging.getLogger(__name__)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if "model" in state and not torch.is_tensor(state["model"]):  # upstream's T3 files may wrap the state
        state = state["model"][0]
    return state


def _weights_from(build, state: dict[str, torch.Tensor], strict: bool = True, empty: bool = True):
    """`build()` with its parameters left unallocated (accelerate's `init_empty_weights`: buffers are still computed,
    parameters skip their random initialisation), then filled from `state`, each cast to its parameter's dtype. A
    checkpoint replaces every parameter anyway, and upstream's S3Gen alone spends seconds initialising weights that
    loading overwrites. Returns the module and `load_state_dict`'s result; a parameter `state` leaves out stays
    on the meta device, so callers check what is missing. `empty=False` builds it initialised, for a constructor
    that writes into its own weights."""
    from contextlib import nullcontext

    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False) if empty else nullcontext():
        module = build()
    dtypes = {name: tensor.dtype for name, tensor in module.state_dict().items()}
    state = {k: v.to(dtypes[k]) if k in dtypes and v.is_floating_point() else v for k, v in state.items()}
    return module, module.load_state_dict(state, strict=strict, assign=True)


def load_voice_encoder(checkpoint: Checkpoint, device: str | torch.device = "cpu"):
    """The VoiceEncoder (16 kHz audio -> 256-d unit-norm speaker embedding)."""
    from chatterbox.models.voice_encoder import VoiceEncoder

    ve, _ = _weights_from(VoiceEncoder, _load_state(checkpoint.paths["ve"]))
    return ve.to(device).eval()


def t3_config(checkpoint_config: dict[str, Any], multilingual: bool = True):
    """Upstream `T3Config`, with the reduced sizes a checkpoint's config.json records."""
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config.multilingual() if multilingual else T3Config.english_only()
    overrides = dict(checkpoint_config.get("t3", {}))
    llama = overrides.pop("llama", None)
    for key, value in overrides.items():
        if not hasattr(hp, key):
            raise ValueError(f"config.json sets t3.{key}, which T3Config does not have.")
        setattr(hp, key, value)
    if llama:  # T3 looks its backbone up by name: a reduced one gets an entry of its own
        hp.llama_config_name = register_llama_config(hp.llama_config_name, llama)
    return hp


def build_t3(checkpoint_config: dict[str, Any], multilingual: bool = True):
    from chatterbox.models.t3 import T3

    return T3(t3_config(checkpoint_config, multilingual))


def load_t3(checkpoint: Checkpoint, device: str | torch.device = "cpu"):
    """T3 (text tokens -> S3 speech tokens) built from the checkpoint's config and loaded strictly."""
    t3, _ = _weights_from(lambda: build_t3(checkpoint.config, checkpoint.layout.multilingual),
                          _load_state(checkpoint.paths["t3"]))
    return t3.to(device).eval()


def build_s3gen(checkpoint_config: dict[str, Any], meanflow: bool = False):
    """Upstream S3Gen; a config with reduced sizes under `s3gen` gets smaller submodules of the same classes:
    `encoder` / `decoder` (the flow's), `speaker_encoder` (CAMPPlus's arguments) and `vocoder` (HiFT's, with
    `f0_predictor` for its F0 predictor's). S3Gen's constructor takes no sizes, so the reduced ones replace its
    submodules after construction; what they must keep for the rest of S3Gen to fit (the 192-wide x-vector, HiFT's
    upsampling to 24 kHz) stays upstream's. The S3 tokenizer always keeps upstream's size: the speech tokens T3
    learns come from it, and a narrower random one gives tokens of other statistics.
    `meanflow`: the flow of Resemble's distilled decoder (`S3Gen(meanflow=True)`: a time mixer for its second time
    input, 2 steps without CFG).
    """
    with warnings.catch_warnings():  # upstream's decoder uses diffusers' LoRACompatibleLinear (deprecated, works)
        warnings.filterwarnings("ignore", message=".*LoRACompatibleLinear.*", category=FutureWarning)
        return _build_s3gen(checkpoint_config.get("s3gen"), meanflow)


def _build_s3gen(sizes: dict[str, Any] | None, meanflow: bool):
    from chatterbox.models.s3gen import S3Gen

    s3gen = S3Gen(meanflow=meanflow)
    if sizes:
        from chatterbox.models.s3gen.configs import CFM_PARAMS
        from chatterbox.models.s3gen.decoder import ConditionalDecoder
        from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
        from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
        from chatterbox.models.s3gen.transformer.upsample_encoder import (
            UpsampleConformerEncoder,
        )

        encoder = UpsampleConformerEncoder(
            **{
                "output_size": 512, "attention_heads": 8, "linear_units": 2048, "num_blocks": 6, "dropout_rate": 0.1,
                "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1, "normalize_before": True,
                "input_layer": "linear", "pos_enc_layer_type": "rel_pos_espnet",
                "selfattention_layer_type": "rel_selfattn", "input_size": 512, "use_cnn_module": False,
                "macaron_style": False, **sizes.get("encoder", {}),
            }
        )
        estimator = ConditionalDecoder(
            **{
                "in_channels": 320, "out_channels": 80, "causal": True, "channels": [256], "dropout": 0.0,
                "attention_head_dim": 64, "n_blocks": 4, "num_mid_blocks": 12, "num_heads": 8, "act_fn": "gelu",
                "meanflow": meanflow, **sizes.get("decoder", {}),
            }
        )
        decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
        s3gen.flow = CausalMaskedDiffWithXvec(encoder=encoder, decoder=decoder)
    if sizes and "speaker_encoder" in sizes:
        from chatterbox.models.s3gen.xvector import CAMPPlus

        s3gen.speaker_encoder = CAMPPlus(memory_efficient=False, **sizes["speaker_encoder"])
    if sizes and "vocoder" in sizes:
        s3gen.mel2wav = _hift(dict(sizes["vocoder"]))
    return s3gen


def _hift(sizes: dict[str, Any]):
    """HiFT as `S3Token2Wav` builds it (24 kHz, upsampling 8x5x3), with `sizes` over its arguments."""
    from chatterbox.models.s3gen.f0_predictor import ConvRNNF0Predictor
    from chatterbox.models.s3gen.hifigan import HiFTGenerator

    from ..constants import S3GEN_SR

    f0_predictor = ConvRNNF0Predictor(**sizes.pop("f0_predictor", {}))
    return HiFTGenerator(
        **{
            "sampling_rate": S3GEN_SR, "upsample_rates": [8, 5, 3], "upsample_kernel_sizes": [16, 11, 7],
            "source_resblock_kernel_sizes": [7, 7, 11],
            "source_resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], **sizes,
        },
        f0_predictor=f0_predictor,
    )


def _load_s3gen(config: dict[str, Any], source: Path, meanflow: bool = False):
    """S3Gen built at `config`'s sizes and loaded from `source` strictly except for `computed_s3gen_buffers()`: a
    file saved by a newer S3Gen (the packs' s3gen_v3.pt) does not hold them, and the ones S3Gen computed at
    construction are what upstream uses."""
    # the meanflow decoder's constructor sets its time mixer's weights itself: it needs them allocated
    s3gen, result = _weights_from(lambda: build_s3gen(config, meanflow=meanflow), _load_state(source), strict=False,
                                  empty=not meanflow)
    computed = computed_s3gen_buffers()
    missing = set(result.missing_keys) - computed
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"{source} does not fit S3Gen{' (meanflow)' if s3gen.meanflow else ''}: missing "
            f"{sorted(missing)[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected {sorted(result.unexpected_keys)[:8]}. "
            f"Only {sorted(computed)} may be missing (buffers S3Gen computes itself); is this an S3Gen "
            "checkpoint of the same kind and size?"
        )
    return s3gen


def load_s3gen(checkpoint: Checkpoint, device: str | torch.device = "cpu"):
    """S3Gen (S3 tokenizer, flow-matching decoder, CAMPPlus x-vector, HiFT vocoder), loaded strictly (see
    `_load_s3gen`)."""
    return _load_s3gen(checkpoint.config, checkpoint.paths["s3gen"]).to(device).eval()


def load_meanflow_s3gen(source: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        revision: str | None = None):
    """Resemble's meanflow S3Gen (`s3gen_meanflow.safetensors`, shipped with Chatterbox-Turbo) from a folder that
    holds the file or a Hub repo id (default `MEANFLOW_REPO`), built at the sizes the folder's config.json records
    (upstream's without one) and loaded strictly, as upstream's `ChatterboxTurboTTS.from_local` loads it."""
    from .checkpoint import resolve_meanflow

    path, config = resolve_meanflow(source, revision)
    return _load_s3gen(config, path, meanflow=True).to(device).eval()


def load_text_tokenizer(checkpoint: Checkpoint):
    """The grapheme tokenizer: `MTLTokenizer` for multilingual checkpoints, `EnTokenizer` for the English one."""
    from chatterbox.models.tokenizers import EnTokenizer, MTLTokenizer

    cls = MTLTokenizer if checkpoint.layout.multilingual else EnTokenizer
    return cls(str(checkpoint.paths["tokenizer"]))


def load_chatterbox(name_or_path: "str | os.PathLike | Checkpoint", device: str | torch.device = "cpu",
                    variant: str | None = None, t3_model: str | None = None):
    """The whole upstream `ChatterboxMultilingualTTS` (or `ChatterboxTTS`) from any checkpoint this module resolves
    (or from an already resolved `Checkpoint`). A merged model whose tokenizer is not the one its config.json
    records (the base's it was merged with) gets a warning naming both.

    Args:
        name_or_path: A Hub repo id or local folder in any layout `resolve_checkpoint` reads, or a `Checkpoint`.
        device: Where the model runs.
        variant: The layout to take from a repo that holds several.
        t3_model: `v2` or `v3`: which T3 of `ResembleAI/chatterbox`.

    Returns:
        Upstream's `ChatterboxMultilingualTTS` (or `ChatterboxTTS` for the English layout), with the checkpoint's
        default voice when it has one. `ChatterboxLatamTTS` wraps it for synthesis.
    """
    if isinstance(name_or_path, Checkpoint):
        checkpoint = name_or_path
    else:
        checkpoint = resolve_checkpoint(name_or_path, variant=variant, t3_model=t3_model)
    checkpoint.check_tokenizer(checkpoint.config.get("tokenizer"), f"The merged model {checkpoint.source}")
    device = str(device)
    parts = dict(
        t3=load_t3(checkpoint, device),
        s3gen=load_s3gen(checkpoint, device),
        ve=load_voice_encoder(checkpoint, device),
        tokenizer=load_text_tokenizer(checkpoint),
        device=device,
    )
    if checkpoint.layout.multilingual:
        from chatterbox.mtl_tts import ChatterboxMultilingualTTS as cls
        from chatterbox.mtl_tts import Conditionals
    else:
        from chatterbox.tts import ChatterboxTTS as cls
        from chatterbox.tts import Conditionals
    conds = None
    if "conds" in checkpoint.paths:
        path = checkpoint.paths["conds"]
        conds = load_conditionals(path) if path.suffix == ".safetensors" else Conditionals.load(path, "cpu")
        conds = conds.to(device)
    return cls(conds=conds, **parts)


def save_conditionals(conds, path: str | os.PathLike) -> None:
    """Writes upstream `Conditionals` (a default voice: T3Cond + S3Gen reference) as safetensors, one tensor per
    field (`t3.speaker_emb`, `gen.prompt_feat`, ...), instead of upstream's pickle (`conds.pt`)."""
    from safetensors.torch import save_file

    tensors = {f"t3.{k}": v for k, v in conds.t3.__dict__.items() if torch.is_tensor(v)}
    tensors.update({f"gen.{k}": v for k, v in conds.gen.items() if torch.is_tensor(v)})
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))


def load_conditionals(path: str | os.PathLike):
    """Upstream `Conditionals` from `save_conditionals`' file."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.mtl_tts import Conditionals
    from safetensors.torch import load_file

    state = load_file(str(path))
    t3 = {k[3:]: v for k, v in state.items() if k.startswith("t3.")}
    gen = {k[4:]: v for k, v in state.items() if k.startswith("gen.")}
    gen.setdefault("prompt_feat_len", None)
    return Conditionals(T3Cond(**t3), gen)

