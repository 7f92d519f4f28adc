"""Every reach into another package's private parts, in one place (trl's `_compat.py` does the same).

The project builds on upstream `chatterbox`, `transformers` and `torch` through their public classes wherever it can;
where it cannot (an internal the public API does not expose), the reach lives here, as a small function named for
what it does, registered in `SHIMS` with the package, the internal it touches and the versions it was checked
against. A private method of another package's class that a project class overrides cannot be a function here (the
override stays on its class, as `transformers.Trainer`'s save hooks on `ChatterboxTrainer`): it is registered all the
same (`register_internal`), naming the class that overrides it. `probe(name)` checks that the internal is still where
the entry expects it and raises `CompatError` naming the installed version when it moved; tests/test_compat.py probes
every entry, so an upgrade that moves one fails there, with the fix's place in the message, instead of somewhere deep
in a run, and it checks that no module but this one reaches into another package's private names.

Importing this module imports neither torch nor the packages: each shim imports what it reaches when it runs.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass


class CompatError(RuntimeError):
    """An internal a shim reaches is not where the installed package keeps it."""


@dataclass(frozen=True)
class Shim:
    """One reach into a package's internals."""

    name: str
    """The function here that makes the reach."""
    package: str
    """The distribution reached into (`chatterbox-tts`, `transformers`, `torch`)."""
    internal: str
    """What it touches, as `module:attribute.path`."""
    checked: str
    """The versions it was checked against."""
    why: str
    """Why the public API does not do."""
    used_in: str = ""
    """Where the reach is made when it is not a function here (`register_internal`): the overriding class."""

    def place(self) -> str:
        """The code that makes the reach: the function here, or the class `used_in` names."""
        return self.used_in or f"chatterbox_latam.compat.{self.name}"

    def installed(self) -> str:
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"


SHIMS: dict[str, Shim] = {}


def shim(package: str, internal: str, checked: str, why: str) -> Callable[[Callable], Callable]:
    """Registers the decorated function as the shim of `internal` (see `Shim`)."""
    def register(function: Callable) -> Callable:
        SHIMS[function.__name__] = Shim(function.__name__, package, internal, checked, why)
        return function
    return register


def register_internal(package: str, internal: str, checked: str, why: str, used_in: str) -> Shim:
    """Registers a reach that cannot be a function here: a private method of another package's class that the
    project class `used_in` overrides (the override must stay on that class). The entry is named after the internal
    (`Trainer._save`) and probed like every shim."""
    name = internal.partition(":")[2]
    SHIMS[name] = Shim(name, package, internal, checked, why, used_in)
    return SHIMS[name]


def resolve(internal: str):
    """The object `module:attribute.path` names (a class attribute, a function, a module constant)."""
    module_name, _, path = internal.partition(":")
    target = importlib.import_module(module_name)
    for part in filter(None, path.split(".")):
        target = getattr(target, part)
    return target


INSTANCE = "()."
"""In an internal, `module:Class().attribute`: an attribute the class's instances get (a buffer, or state that
`__init__` sets), which the class itself does not hold."""


def locate(internal: str) -> None:
    """Raises ImportError or AttributeError unless `internal` is where it says: `module:attribute.path` resolves, or
    for `module:Class().attribute` the class declares the attribute (annotations) or its source, or a base's, sets or
    reads it (the only trace an instance attribute leaves on a class)."""
    owner, marker, attribute = internal.rpartition(INSTANCE)
    if not marker:
        resolve(internal)
        return
    cls = resolve(owner)
    if not _instances_have(cls, attribute):
        raise AttributeError(f"{cls.__qualname__} and its bases neither declare {attribute!r} nor mention it in "
                             "their source")


def _instances_have(cls: type, attribute: str) -> bool:
    mentioned = re.compile(rf"""\.{re.escape(attribute)}\b|["']{re.escape(attribute)}["']""")
    for klass in cls.__mro__:
        if attribute in vars(klass) or attribute in vars(klass).get("__annotations__", {}):
            return True
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):  # a builtin or a class without source
            continue
        if mentioned.search(source):
            return True
    return False


def probe(name: str) -> None:
    """Raises `CompatError` unless the internal `SHIMS[name]` reaches is where it expects it."""
    spec = SHIMS[name]
    try:
        locate(spec.internal)
    except (ImportError, AttributeError) as error:
        raise CompatError(f"{spec.package} {spec.installed()}: {spec.internal} is gone ({error}); "
                          f"{spec.place()} was checked against {spec.checked}. "
                          f"Update it for the installed version, or install one of those.") from error


CHATTERBOX = "chatterbox-tts 0.1.7 and upstream main (5de7a54, 2026-07)"
TRANSFORMERS = "transformers 5.24.0"
TORCH = "torch 2.11.0"


# -- chatterbox -----------------------------------------------------------------------------------------------------
@shim("chatterbox-tts", "chatterbox.mtl_tts:ChatterboxMultilingualTTS.prepare_conditionals",
      checked="chatterbox-tts 0.1.7 and upstream main (2026-11)",
      why="upstream's prepare_conditionals stores the voice on the model (`self.conds`) and reads S3Gen and the "
          "prompt length (`ENC_COND_LEN`) from it; there is no function that returns a voice for given ones")
def conditionals_of(tts, path: str, exaggeration: float = 0.5, s3gen=None, prompt_samples: int | None = None):
    """Upstream's `prepare_conditionals(path)` for `tts`, returning the `Conditionals` and changing nothing on
    `tts`: it runs on a shallow copy (sharing every module) whose `s3gen` and `ENC_COND_LEN` are set for the call,
    so the model's default voice stays as it was and two threads conditioning two voices at once each get their
    own. `s3gen`: another S3Gen to take the reference with (the meanflow decoder); `prompt_samples`: 16 kHz samples
    of the reference T3's prompt is tokenised from (upstream: 6 s)."""
    clone = copy.copy(tts)
    if s3gen is not None:
        clone.s3gen = s3gen
    if prompt_samples is not None:
        clone.ENC_COND_LEN = prompt_samples
    clone.prepare_conditionals(path, exaggeration=exaggeration)
    return clone.conds


@shim("chatterbox-tts", "chatterbox.models.t3.t3:LLAMA_CONFIGS", checked=CHATTERBOX,
      why="T3 builds its Llama backbone from an entry of this module-level dict, named by `hp.llama_config_name`, and "
          "takes no config object: a backbone of other sizes needs an entry of its own")
def register_llama_config(base: str, overrides: dict) -> str:
    """The name to set as `T3Config.llama_config_name` for upstream's backbone `base` with `overrides` (e.g. fewer
    layers): the entry is added once under a name of its own, and upstream's entries stay as they are."""
    import json

    configs = importlib.import_module("chatterbox.models.t3.t3").LLAMA_CONFIGS
    name = "chatterbox_latam:" + json.dumps(overrides, sort_keys=True)
    configs.setdefault(name, {**configs[base], **overrides})
    return name


@shim("chatterbox-tts", "chatterbox.models.s3gen.s3gen:S3Token2Wav.ignore_state_dict_missing", checked=CHATTERBOX,
      why="the keys name the S3 tokenizer's private buffers (`_mel_filters`, `window`); upstream lists them here "
          "and has no loader that accepts them missing")
def computed_s3gen_buffers() -> frozenset[str]:
    """State-dict keys of the buffers S3Gen computes at construction (its S3 tokenizer's mel filters and window),
    which newer S3Gen files no longer save (the packs' s3gen_v3.pt): loading accepts exactly these as missing."""
    return frozenset(importlib.import_module("chatterbox.models.s3gen.s3gen").S3Token2Wav.ignore_state_dict_missing)


S3GEN_HALVES = ("`S3Gen.inference` runs the flow and HiFT in one call, at one precision and without HiFT's cache; "
                "the flow on a bf16 copy and chunked vocoding need its two halves")


@shim("chatterbox-tts", "chatterbox.models.s3gen.s3gen:S3Token2Wav.flow_inference", checked=CHATTERBOX,
      why=S3GEN_HALVES)
def flow_inference(flow, speech_tokens, ref_dict: dict, cfm_steps: int | None):
    """S3Gen's flow alone (`flow` is an S3Gen): mel frames (1, 80, frames) for `speech_tokens` (1, n) continuing
    `ref_dict`'s prompt, none held back (`finalize`), with `cfm_steps` Euler steps (None: the decoder's own). It runs
    on a copy of `ref_dict`: upstream writes the reference, cast to the model's dtype, into the dict it is given."""
    return flow.flow_inference(speech_tokens, ref_dict=dict(ref_dict), n_cfm_timesteps=cfm_steps, finalize=True)


@shim("chatterbox-tts", "chatterbox.models.s3gen.flow:CausalMaskedDiffWithXvec.inference", checked=CHATTERBOX,
      why="`flow_inference` casts every tensor of the reference to the model's dtype, the prompt's token ids too, "
          "which bf16 rounds above 256: at another precision the flow module is called as it calls it, with only "
          "the features cast")
def flow_inference_at_precision(flow, speech_tokens, ref_dict: dict, cfm_steps: int | None):
    """`flow_inference` on an S3Gen copy at another precision (`flow.dtype`, e.g. bf16): the reference's features
    cast to it, its token ids and lengths kept integers (the caller's dict left as it is), and the meanflow
    decoder's noise drawn in fp32 and cast, so a seed gives the numbers an fp32 flow starts from."""
    import torch

    dtype, device = flow.dtype, flow.device
    ref_dict = {k: v.to(device, torch.long if k.endswith(("token", "_len")) else dtype) if torch.is_tensor(v) else v
                for k, v in ref_dict.items()}
    speech_tokens = speech_tokens.to(device)
    noise = None
    if flow.meanflow:  # as `flow_inference` draws it (there in the model's dtype)
        noise = torch.randn(1, 80, speech_tokens.size(-1) * 2, device=device).to(dtype)
    lengths = torch.tensor([speech_tokens.shape[1]], device=device)
    mels, _ = flow.flow.inference(token=speech_tokens, token_len=lengths, finalize=True, noised_mels=noise,
                                  n_timesteps=cfm_steps or (2 if flow.meanflow else 10), meanflow=flow.meanflow,
                                  **ref_dict)
    return mels


@shim("chatterbox-tts", "chatterbox.models.s3gen.s3gen:S3Token2Wav.hift_inference", checked=CHATTERBOX,
      why=S3GEN_HALVES)
def hift_inference(s3gen, mels, cache_source=None):
    """S3Gen's HiFT vocoder alone: (audio (1, samples), excitation source) for `mels` (1, 80, frames), continuing
    `cache_source` (the previous chunk's source tail; None: a fresh start)."""
    return s3gen.hift_inference(mels, cache_source)


@shim("chatterbox-tts", "chatterbox.models.s3gen.s3gen:S3Token2Wav().trim_fade", checked=CHATTERBOX,
      why="upstream fades the audio in against spill-over from the reference inside `inference`; the fade is a "
          "buffer, not an API")
def reference_fade(s3gen):
    """The fade-in upstream multiplies the start of S3Gen's audio with (1-D: silence, then a raised cosine)."""
    return s3gen.trim_fade


@shim("chatterbox-tts", "chatterbox.models.s3gen.flow:CausalMaskedDiffWithXvec().pre_lookahead_len",
      checked=CHATTERBOX, why="streaming must hold back the frames the flow's encoder will redo once it sees the "
                              "next tokens; upstream streams nothing, so only the flow knows how many")
def flow_lookahead_tokens(s3gen) -> int:
    """Tokens at the end whose mel frames S3Gen's flow changes once the next tokens are known (its lookahead)."""
    return s3gen.flow.pre_lookahead_len


@shim("chatterbox-tts", "chatterbox.models.s3gen.flow:CausalMaskedDiffWithXvec().token_mel_ratio",
      checked=CHATTERBOX, why="streaming counts the flow's mel frames per token; upstream streams nothing, so only "
                              "the flow knows how many")
def flow_frames_per_token(s3gen) -> int:
    """Mel frames S3Gen's flow makes per speech token (2: 50 frames per second from 25 tokens)."""
    return s3gen.flow.token_mel_ratio


# -- transformers ---------------------------------------------------------------------------------------------------
@shim("transformers", "transformers.configuration_utils:PreTrainedConfig._attn_implementation", checked=TRANSFORMERS,
      why="`PreTrainedModel.set_attn_implementation` switches a whole model for good; one call in eager attention "
          "(upstream's decoding) or undoing what upstream's alignment analyzer switches needs the config's own field")
@contextlib.contextmanager
def attention_implementation(config, implementation: str | None = None):
    """Within the block, the layers that read `config` run `implementation` attention ('eager', 'sdpa'; None: as
    they are); on leaving it, the config's attention implementation and `output_attentions` are what they were,
    whatever the block set."""
    saved = (config._attn_implementation, config.output_attentions)
    try:
        if implementation is not None:
            config._attn_implementation = implementation
        yield config
    finally:
        config._attn_implementation, config.output_attentions = saved


@shim("transformers", "transformers.configuration_utils:PreTrainedConfig._attn_implementation", checked=TRANSFORMERS,
      why="a layer picks its attention kernel from the config it holds and there is no per-layer setting: a layer "
          "gets a copy of the config with another implementation")
def with_attention_implementation(config, implementation: str):
    """A shallow copy of `config` whose attention implementation is `implementation`: a layer given it
    (`layer.self_attn.config = copy`) runs that kernel while the others keep theirs."""
    copied = copy.copy(config)
    copied._attn_implementation = implementation
    return copied


TRAINER = "chatterbox_latam.training.trainer.ChatterboxTrainer"


@shim("transformers", "transformers.trainer:Trainer()._signature_columns", checked=TRANSFORMERS,
      why="the Trainer drops every dataset column its model's forward does not name; this list, which "
          "`_set_signature_columns_if_needed` fills, is where a subclass names the columns to keep (as trl's do)")
def keep_signature_columns(trainer, columns: Iterable[str]) -> None:
    """Makes `trainer` keep the dataset `columns` (the collator's) rather than the names its model's forward takes:
    the body of `_set_signature_columns_if_needed`, which `ChatterboxTrainer` overrides."""
    if trainer._signature_columns is None:
        trainer._signature_columns = list(columns)


@shim("transformers", "transformers.trainer:Trainer._prepare_inputs", checked=TRANSFORMERS,
      why="an overridden `prediction_step` must move the batch to the device as the Trainer's own does; the "
          "Trainer's way to is private")
def prepared_inputs(trainer, inputs: dict) -> dict:
    """`inputs` as the Trainer feeds its model: on its device, in its precision."""
    return trainer._prepare_inputs(inputs)


@shim("transformers", "transformers.trainer:Trainer._get_output_dir", checked=TRANSFORMERS,
      why="where `_save_checkpoint` writes (the run's folder, or a hyperparameter-search trial's) has no public "
          "accessor")
def checkpoint_root(trainer, trial) -> str:
    """The folder the Trainer writes `checkpoint-<step>` folders into for `trial` (None outside a search)."""
    return trainer._get_output_dir(trial=trial)


@shim("transformers", "transformers.trainer:Trainer._finish_current_push", checked=TRANSFORMERS,
      why="the Trainer waits for its background Hub pushes only inside `train` and `push_to_hub`; after `train` "
          "returns, the last checkpoint's push may still be going")
def finish_pushes(trainer) -> None:
    """Waits until the Trainer's background push of a checkpoint to the Hub, if one is going, is done."""
    trainer._finish_current_push()


register_internal("transformers", "transformers.trainer:Trainer._set_signature_columns_if_needed", TRANSFORMERS,
                  "the collator's columns are not the names the model's forward takes (`keep_signature_columns`)",
                  used_in=TRAINER)
register_internal("transformers", "transformers.trainer:Trainer._save", TRANSFORMERS,
                  "the Trainer saves the whole model's weights; a checkpoint here holds the adapters only",
                  used_in=TRAINER)
register_internal("transformers", "transformers.trainer:Trainer._load_from_checkpoint", TRANSFORMERS,
                  "resuming loads the adapters back into the wrapped T3 and flow, which the Trainer's loader cannot",
                  used_in=TRAINER)
register_internal("transformers", "transformers.trainer:Trainer._load_best_model", TRANSFORMERS,
                  "`load_best_model_at_end` looks for whole-model or single-PEFT weights, which these checkpoints "
                  "do not hold", used_in=TRAINER)
register_internal("transformers", "transformers.trainer:Trainer._push_from_checkpoint", TRANSFORMERS,
                  "the Trainer pushes whole checkpoints; here only the adapters go, under the accent's folder",
                  used_in=TRAINER)
register_internal("transformers", "transformers.trainer:Trainer._save_checkpoint", TRANSFORMERS,
                  "a checkpoint is marked complete once the Trainer has written all of it, and no public hook runs "
                  "then on every save path", used_in=TRAINER)


# -- torch ----------------------------------------------------------------------------------------------------------
@shim("torch", "torch.nn.modules.module:Module()._forward_hooks", checked=TORCH,
      why="upstream's alignment analyzer registers forward hooks and keeps no handle to remove them by; the "
          "module's hook dict is the only place they can be found")
@contextlib.contextmanager
def forward_hooks_removed(modules: Iterable):
    """On leaving the block, removes the forward hooks registered inside it on `modules` (the ones there before
    stay)."""
    modules = list(modules)
    before = [set(module._forward_hooks) for module in modules]
    try:
        yield
    finally:
        for module, kept in zip(modules, before):
            for key in set(module._forward_hooks) - kept:
                del module._forward_hooks[key]


@shim("torch", "torch.nn.modules.module:Module()._modules", checked=TORCH,
      why="`copy.copy` of a Module shares its child registry, so replacing a child on the copy replaces it on the "
          "original; nn.Module has no public shallow copy")
def module_copy_with(module, **children):
    """A shallow copy of `module` sharing every child module with it but the ones named, which the copy holds as
    given (None: none); the original keeps its own."""
    copied = copy.copy(module)
    object.__setattr__(copied, "_modules", dict(module._modules))
    copied._modules.update(children)
    return copied


@shim("torch", "torch.nn.modules.dropout:_DropoutNd", checked=TORCH,
      why="torch.nn exports no common base of its dropout layers (Dropout, Dropout1d-3d, AlphaDropout, "
          "FeatureAlphaDropout)")
def is_dropout_layer(module) -> bool:
    """Whether `module` is one of torch's dropout layers (each has its rate as `p`)."""
    from torch.nn.modules.dropout import _DropoutNd

    return isinstance(module, _DropoutNd)


WEIGHT_ONLY = ("PyTorch's CPU weight-only kernels have no public names; torchao, which calls them, is slower here and "
               "has no CPU path for int4 (synthesis/cpu_fast/quantized.py)")


@shim("torch", "torch:_weight_int8pack_mm", checked=TORCH, why=WEIGHT_ONLY)
def int8_weight_only_mm(x, weight_int8, scales):
    """`x` (rows, in) in bf16 times an int8 weight (out, in) with one bf16 scale per output row: (rows, out)."""
    import torch

    return torch._weight_int8pack_mm(x, weight_int8, scales)


@shim("torch", "torch:_convert_weight_to_int4pack_for_cpu", checked=TORCH, why=WEIGHT_ONLY)
def int4_pack_for_cpu(q, inner_k_tiles: int = 1):
    """4-bit values (out, in) as int32 in 0..15, packed for `int4_weight_only_mm`."""
    import torch

    return torch._convert_weight_to_int4pack_for_cpu(q, inner_k_tiles)


@shim("torch", "torch:_weight_int4pack_mm_for_cpu", checked=TORCH, why=WEIGHT_ONLY)
def int4_weight_only_mm(x, packed, group_size: int, scales_and_offsets):
    """`x` (rows, in) in bf16 times a packed 4-bit weight (`int4_pack_for_cpu`), dequantised per group of
    `group_size` inputs as `(q - 8) * scale + offset` (`scales_and_offsets`: (in / group_size, out, 2) bf16)."""
    import torch

    return torch._weight_int4pack_mm_for_cpu(x, packed, group_size, scales_and_offsets)
