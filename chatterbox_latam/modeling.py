"""One loader for every Chatterbox checkpoint the project meets.

The same functions load the real `ResembleAI/chatterbox` repository (by repo id or from a local snapshot), the
official Latin-American pack, and the tiny random-init checkpoint that tests and the demo build
(`chatterbox_latam.tiny_model`). A checkpoint is a folder in the upstream file layout; an optional `config.json`
beside the weights records reduced sizes, so a small model is built from the same upstream classes with other
widths and depths instead of a copy of their code.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
MODEL_TYPE = "chatterbox-latam"


@dataclass(frozen=True)
class Generation:
    """How upstream decodes one generation of the multilingual T3 (facts of upstream's code, not choices)."""

    name: str
    repetition_penalty: float
    """Default of `generate` (0.1.7: 2.0; upstream main for v3: 1.2)."""
    alignment: bool
    """Upstream's alignment heuristics (`AlignmentStreamAnalyzer`): 0.1.7 runs them for every multilingual T3;
    upstream main removed them for v3 (commit 3f35dfc)."""
    drop_last_token: bool
    """Upstream main drops the audio of the last speech token ("emitted just before EOS with degraded attention
    and decodes to ~40 ms of noise")."""


GENERATIONS = {
    "v2": Generation("v2", repetition_penalty=2.0, alignment=True, drop_last_token=False),
    "v3": Generation("v3", repetition_penalty=1.2, alignment=False, drop_last_token=True),
}
T3_MODELS = {"v2": "multilingual", "v3": "multilingual-v3"}
"""Upstream's `t3_model` names for the two T3 files of `ResembleAI/chatterbox`, and the layout each one is."""


@dataclass(frozen=True)
class CheckpointLayout:
    """File names of one flavour of Chatterbox checkpoint, as published on the Hub."""

    name: str
    ve: str
    t3: str
    s3gen: str
    tokenizer: str
    conds: str | None = "conds.pt"
    multilingual: bool = True
    support_repo: str | None = None
    """Repository that holds the files this one does not ship (the language packs reuse the base's VE and tokenizer)."""
    generation: str = "v2"
    """How upstream decodes this T3 (`GENERATIONS`)."""

    @property
    def files(self) -> dict[str, str]:
        return {"ve": self.ve, "t3": self.t3, "s3gen": self.s3gen, "tokenizer": self.tokenizer}


_BASE_FILES = dict(ve="ve.pt", tokenizer="grapheme_mtl_merged_expanded_v1.json")
LAYOUTS = {
    "multilingual": CheckpointLayout(name="multilingual", t3="t3_mtl23ls_v2.safetensors", s3gen="s3gen.pt",
                                     **_BASE_FILES),
    # Upstream main's v3 T3 (same architecture) beside v2 in the same repo: `t3_model: v3` picks it.
    "multilingual-v3": CheckpointLayout(name="multilingual-v3", t3="t3_mtl23ls_v3.safetensors", s3gen="s3gen.pt",
                                        generation="v3", **_BASE_FILES),
    "english": CheckpointLayout(
        name="english",
        ve="ve.safetensors",
        t3="t3_cfg.safetensors",
        s3gen="s3gen.safetensors",
        tokenizer="tokenizer.json",
        multilingual=False,
    ),
    # The Single Language Pack (v3 finetunes): their own T3 and S3Gen; VE, tokenizer and default voice come from
    # the base repo. Their s3gen_v3.pt lacks two buffers S3Gen computes itself (`load_s3gen`).
    "es-mx-latam": CheckpointLayout(name="es-mx-latam", t3="t3_es_mx_latam.safetensors", s3gen="s3gen_v3.pt",
                                    support_repo="ResembleAI/chatterbox", generation="v3", **_BASE_FILES),
    "es-es": CheckpointLayout(name="es-es", t3="t3_es_es.safetensors", s3gen="s3gen_v3.pt",
                              support_repo="ResembleAI/chatterbox", generation="v3", **_BASE_FILES),
    # What `chatterbox_latam.merge` writes: every file safetensors. The T3 file keeps upstream's name for its
    # generation, so a full-size merged folder that also holds upstream's ve.pt / s3gen.pt / conds.pt loads with
    # `from_local` too (upstream main's `t3_model="v3"` for the v3 one).
    "merged": CheckpointLayout(
        name="merged",
        ve="ve.safetensors",
        t3="t3_mtl23ls_v2.safetensors",
        s3gen="s3gen.safetensors",
        tokenizer="grapheme_mtl_merged_expanded_v1.json",
        conds="conds.safetensors",
    ),
}
LAYOUTS["merged-v3"] = replace(LAYOUTS["merged"], name="merged-v3", t3=LAYOUTS["multilingual-v3"].t3, generation="v3")
REPO_LAYOUTS = {
    "resembleai/chatterbox": "multilingual",
    "resembleai/chatterbox-multilingual-es-mx-latam": "es-mx-latam",
    "resembleai/chatterbox-multilingual-es-es": "es-es",
}
MERGED_LAYOUTS = {"v2": "merged", "v3": "merged-v3"}
# Buffers S3Gen computes at construction (its S3 tokenizer's mel filters and window) that newer S3Gen versions no
# longer save: the packs' s3gen_v3.pt lacks them. Loading accepts exactly these as missing.
COMPUTED_S3GEN_BUFFERS = frozenset({"tokenizer._mel_filters", "tokenizer.window"})


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint could not be found locally nor downloaded; the message says what to do."""


@dataclass
class Checkpoint:
    """A checkpoint resolved to local files."""

    source: str
    directory: Path
    layout: CheckpointLayout
    paths: dict[str, Path]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def generation(self) -> Generation:
        """How upstream decodes this checkpoint's T3 (a merged model's config.json records its base's)."""
        return GENERATIONS[self.config.get("generation") or self.layout.generation]

    def fingerprint(self) -> str:
        """Identifies the weights that feature extraction depends on (used to key feature caches)."""
        import hashlib

        digest = hashlib.sha256()
        for key in ("ve", "s3gen"):
            path = self.paths[key]
            stat = path.stat()
            digest.update(f"{key}:{path.name}:{stat.st_size}:".encode())
            with open(path, "rb") as handle:  # size plus head and tail: cheap, and changes with the weights
                digest.update(handle.read(1 << 20))
                handle.seek(max(0, stat.st_size - (1 << 20)))
                digest.update(handle.read())
        digest.update(json.dumps(self.config, sort_keys=True).encode())
        return digest.hexdigest()[:16]


def _detect_layout(directory: Path, config: dict[str, Any]) -> CheckpointLayout:
    if config.get("layout") in LAYOUTS:
        return LAYOUTS[config["layout"]]
    for layout in LAYOUTS.values():  # v2 before v3 where a folder holds both, as upstream's default
        if not layout.name.startswith("merged") and (directory / layout.t3).exists():
            return layout
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    expected = ", ".join(f"{layout.t3} ({layout.name})" for layout in LAYOUTS.values())
    raise CheckpointNotFoundError(
        f"{directory} holds no Chatterbox T3 weights (expected one of: {expected}); found: {present or 'nothing'}."
    )


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not path.exists():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    return config if config.get("model_type") == MODEL_TYPE else {}


def _download(repo_id: str, filenames: list[str], revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(
            snapshot_download(
                repo_id=repo_id,
                revision=revision,
                allow_patterns=filenames,
                token=os.getenv("HF_TOKEN"),
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as error:
        raise CheckpointNotFoundError(
            f"Could not get {filenames} of the Hub repo '{repo_id}' ({type(error).__name__}: {error}). "
            "Check the network and HF_TOKEN, or download it once with "
            f"`hf download {repo_id} --local-dir DIR` and pass DIR instead of the repo id."
        ) from error


def _remote_config(repo_id: str, revision: str | None) -> dict[str, Any]:
    """The project's config.json of a Hub repo ({} when the repo has none, e.g. ResembleAI's own repos)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(repo_id, CONFIG_NAME, revision=revision, token=os.getenv("HF_TOKEN"))
    except EntryNotFoundError:
        return {}
    except Exception:  # noqa: BLE001 - unreachable repo: the download of the weights below says what to do
        return {}
    return _read_config(Path(path).parent)


def layout_name(variant: str | None = None, t3_model: str | None = None) -> str | None:
    """The layout a recipe asks for: `model_variant` (a `LAYOUTS` name) or upstream's `t3_model` (v2 / v3)."""
    if t3_model is not None and t3_model not in T3_MODELS:
        raise ValueError(f"t3_model={t3_model!r}: use one of {sorted(T3_MODELS)} (upstream's names for the T3 files "
                         "of ResembleAI/chatterbox).")
    if variant is not None and variant not in LAYOUTS:
        raise ValueError(f"model_variant={variant!r}: use one of {sorted(LAYOUTS)} or leave it unset.")
    if variant and t3_model and variant != T3_MODELS[t3_model]:
        raise ValueError(f"model_variant={variant!r} and t3_model={t3_model!r} disagree: set one of them.")
    return variant or (T3_MODELS[t3_model] if t3_model else None)


def resolve_checkpoint(name_or_path: str | os.PathLike, variant: str | None = None, revision: str | None = None,
                       t3_model: str | None = None) -> Checkpoint:
    """Finds a checkpoint's files: a local folder as it is, a Hub repo id through `snapshot_download`.

    `variant` picks the layout when a repo holds several (`ResembleAI/chatterbox` holds the multilingual v2 and v3
    T3 and the English model; `t3_model="v3"` is upstream's name for the v3 choice); a local folder is recognised
    by its files. A language pack's VE, tokenizer and default voice come from its support repo
    (`ResembleAI/chatterbox`) when the folder or repo does not hold them.
    """
    variant = layout_name(variant, t3_model)
    source = str(name_or_path)
    directory = Path(source).expanduser()
    if directory.is_dir():
        config = _read_config(directory)
        layout = LAYOUTS[variant] if variant else _detect_layout(directory, config)
    elif directory.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise CheckpointNotFoundError(
            f"'{source}' is neither a checkpoint folder nor a Hub repo id (OWNER/NAME). "
            "Point base_model to a folder in the ResembleAI/chatterbox file layout or to a repo id."
        )
    else:
        name = variant or REPO_LAYOUTS.get(source.lower()) or _remote_config(source, revision).get("layout")
        layout = LAYOUTS[name or "multilingual"]
        own = [layout.t3, layout.s3gen, CONFIG_NAME]
        if layout.support_repo:
            own.append("t3_*.safetensors")  # a pack's T3 file under another name than expected is still found
        else:
            own += [layout.ve, layout.tokenizer, *([layout.conds] if layout.conds else [])]
        directory = _download(source, own, revision)
        config = _read_config(directory)

    paths = {key: directory / name for key, name in layout.files.items()}
    if not paths["t3"].exists() and layout.support_repo:
        found = sorted(p for p in directory.glob("t3_*.safetensors") if not p.name.startswith("t3_mtl23ls"))
        if len(found) == 1:
            paths["t3"] = found[0]
    if layout.conds:
        paths["conds"] = directory / layout.conds
    missing = [key for key, path in paths.items() if not path.exists()]
    if layout.support_repo and set(missing) - {"t3", "s3gen"}:
        wanted = [k for k in missing if k not in ("t3", "s3gen")]
        names = [layout.files[k] if k != "conds" else layout.conds for k in wanted]
        try:
            support = _download(layout.support_repo, names, None)
        except CheckpointNotFoundError as error:
            raise CheckpointNotFoundError(
                f"{source} is a {layout.name} language pack: its {names} come from {layout.support_repo}, which "
                f"could not be reached ({error}). Put those files beside the pack's own in {directory}, or run "
                f"`hf download {layout.support_repo} {' '.join(names)} --local-dir {directory}`."
            ) from None
        for key, name in zip(wanted, names):
            paths[key] = support / name
        missing = [key for key, path in paths.items() if not path.exists()]
    if "conds" in missing:
        paths.pop("conds")  # optional: the default voice
        missing.remove("conds")
    if missing:
        raise CheckpointNotFoundError(
            f"Checkpoint '{source}' ({layout.name} layout) lacks {[layout.files[k] for k in missing]} in {directory}."
        )
    return Checkpoint(source=source, directory=directory, layout=layout, paths=paths, config=config)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if "model" in state and not torch.is_tensor(state["model"]):  # upstream's T3 files may wrap the state
        state = state["model"][0]
    return state


def load_voice_encoder(checkpoint: Checkpoint, device: str | torch.device = "cpu"):
    """The VoiceEncoder (16 kHz audio -> 256-d unit-norm speaker embedding)."""
    from chatterbox.models.voice_encoder import VoiceEncoder

    ve = VoiceEncoder()
    ve.load_state_dict(_load_state(checkpoint.paths["ve"]))
    return ve.to(device).eval()


def t3_config(checkpoint_config: dict[str, Any], multilingual: bool = True):
    """Upstream `T3Config`, with the reduced sizes a checkpoint's config.json records."""
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config.multilingual() if multilingual else T3Config.english_only()
    overrides = dict(checkpoint_config.get("t3", {}))
    llama = overrides.pop("llama", None)
    for key, value in overrides.items():
        if not hasattr(hp, key):
            raise ValueError(f"config.json sets t3.{key}, which T3Config does not have.")
        setattr(hp, key, value)
    if llama:
        base = LLAMA_CONFIGS[hp.llama_config_name]
        # T3 looks its backbone up by name; a reduced one gets its own entry, the upstream entries stay as they are.
        name = "chatterbox_latam:" + json.dumps(llama, sort_keys=True)
        LLAMA_CONFIGS.setdefault(name, {**base, **llama})
        hp.llama_config_name = name
    return hp


def build_t3(checkpoint_config: dict[str, Any], multilingual: bool = True):
    from chatterbox.models.t3 import T3

    return T3(t3_config(checkpoint_config, multilingual))


def load_t3(checkpoint: Checkpoint, device: str | torch.device = "cpu"):
    """T3 (text tokens -> S3 speech tokens) built from the checkpoint's config and loaded strictly."""
    t3 = build_t3(checkpoint.config, checkpoint.layout.multilingual)
    t3.load_state_dict(_load_state(checkpoint.paths["t3"]))
    return t3.to(device).eval()


def build_s3gen(checkpoint_config: dict[str, Any]):
    """Upstream S3Gen; a config with `s3gen.encoder` / `s3gen.decoder` sizes gets a smaller flow of the same classes.

    The S3 tokenizer, CAMPPlus and HiFT keep upstream's fixed sizes (their constructors take none).
    """
    with warnings.catch_warnings():  # upstream's decoder uses diffusers' LoRACompatibleLinear (deprecated, works)
        warnings.filterwarnings("ignore", message=".*LoRACompatibleLinear.*", category=FutureWarning)
        return _build_s3gen(checkpoint_config.get("s3gen"))


def _build_s3gen(sizes: dict[str, Any] | None):
    from chatterbox.models.s3gen import S3Gen

    s3gen = S3Gen()
    if sizes:
        from chatterbox.models.s3gen.configs import CFM_PARAMS
        from chatterbox.models.s3gen.decoder import ConditionalDecoder
        from chatterbox.models.s3gen.flow import CausalMaskedDiffWithXvec
        from chatterbox.models.s3gen.flow_matching import CausalConditionalCFM
        from chatterbox.models.s3gen.transformer.upsample_encoder import UpsampleConformerEncoder

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
                **sizes.get("decoder", {}),
            }
        )
        decoder = CausalConditionalCFM(spk_emb_dim=80, cfm_params=CFM_PARAMS, estimator=estimator)
        s3gen.flow = CausalMaskedDiffWithXvec(encoder=encoder, decoder=decoder)
    return s3gen


def load_s3gen(checkpoint: Checkpoint, device: str | torch.device = "cpu"):
    """S3Gen (S3 tokenizer, flow-matching decoder, CAMPPlus x-vector, HiFT vocoder), loaded strictly except for
    `COMPUTED_S3GEN_BUFFERS`: a file saved by a newer S3Gen (the packs' s3gen_v3.pt) does not hold them, and the
    ones S3Gen computed at construction are what upstream uses."""
    s3gen = build_s3gen(checkpoint.config)
    source = checkpoint.paths["s3gen"]
    result = s3gen.load_state_dict(_load_state(source), strict=False)
    missing = set(result.missing_keys) - COMPUTED_S3GEN_BUFFERS
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"{source} does not fit S3Gen: missing {sorted(missing)[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected {sorted(result.unexpected_keys)[:8]}. Only {sorted(COMPUTED_S3GEN_BUFFERS)} may be missing "
            "(buffers S3Gen computes itself); is this an S3Gen checkpoint of the same size?"
        )
    return s3gen.to(device).eval()


def load_text_tokenizer(checkpoint: Checkpoint):
    """The grapheme tokenizer: `MTLTokenizer` for multilingual checkpoints, `EnTokenizer` for the English one."""
    from chatterbox.models.tokenizers import EnTokenizer, MTLTokenizer

    cls = MTLTokenizer if checkpoint.layout.multilingual else EnTokenizer
    return cls(str(checkpoint.paths["tokenizer"]))


def load_chatterbox(name_or_path: "str | os.PathLike | Checkpoint", device: str | torch.device = "cpu",
                    variant: str | None = None, t3_model: str | None = None):
    """The whole upstream `ChatterboxMultilingualTTS` (or `ChatterboxTTS`) from any checkpoint this module resolves
    (or from an already resolved `Checkpoint`)."""
    if isinstance(name_or_path, Checkpoint):
        checkpoint = name_or_path
    else:
        checkpoint = resolve_checkpoint(name_or_path, variant=variant, t3_model=t3_model)
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
