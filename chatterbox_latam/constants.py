"""Facts of the model and the project, one copy each: the accents, audio and token rates and ids of the model
(6561 S3 tokens, 25 tokens/s, 24 kHz), the published checkpoint layouts and how upstream decodes each generation.
No torch import: recipes validate against these without loading a model."""

from __future__ import annotations

from dataclasses import dataclass, replace


# -- accents ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Accent:
    code: str
    """The code recipes, datasets, adapters and the API use (OpenSLR's and Common Voice's country codes)."""
    name: str
    """How cards and reports name it."""
    currency: str | None = None
    """The currency "$" means in the accent's country (num2words knows these codes for Spanish)."""


ACCENT_TABLE = {accent.code: accent for accent in (
    Accent("mx", "Mexican", "MXN"),
    Accent("ar", "Argentine (Rioplatense)", "ARS"),
    Accent("co", "Colombian", "COP"),
    Accent("cl", "Chilean", "CLP"),
    Accent("pe", "Peruvian", "PEN"),
    Accent("pr", "Puerto Rican"),
    Accent("ve", "Venezuelan"),
)}
ACCENTS = tuple(ACCENT_TABLE)
ACCENT_NAMES = {code: accent.name for code, accent in ACCENT_TABLE.items()}
ACCENT_CURRENCY = {code: accent.currency for code, accent in ACCENT_TABLE.items() if accent.currency}

# -- audio and tokens ---------------------------------------------------------------------------------------------
S3_SR = 16_000  # the S3 tokenizer's and VoiceEncoder's input rate
S3GEN_SR = 24_000  # S3Gen's output rate: every WAV the project writes
TOKENS_PER_SECOND = 25  # S3 speech tokens per second of speech
PROMPT_TOKENS = 150  # T3Config.speech_cond_prompt_len: 6 s at 25 Hz
PROMPT_SECONDS = 6.0  # what upstream tokenises of a reference for T3's prompt (`ENC_COND_LEN`)
REFERENCE_GAP_SECONDS = 0.25
"""Silence between a speaker's clips where a reference is joined from several (`data.references`)."""
SPEECH_VOCAB_SIZE = 6561  # S3 tokens; ids at or above are T3's special tokens
SAMPLES_PER_TOKEN = S3GEN_SR // TOKENS_PER_SECOND  # 960 (upstream: S3GEN_SR // S3_TOKEN_RATE)
# Streaming: after a sentence's first chunk, S3Gen's flow continues from this much of the speech before (see
# synthesis/streaming.py; benchmarks/synthesis.py measures the cost per chunk).
STREAM_CONTEXT_SECONDS = 3.0

# -- synthesis settings -------------------------------------------------------------------------------------------
GGUF_TYPES = ("q4_0", "q8_0", "f16", "f32")
"""Weight types of T3's GGUF (`synthesis.cpu_fast.gguf`): q4_0 / q8_0 are llama.cpp's 4 / 8-bit blocks of 32 weights."""
ENGINE_MODES = {"llamacpp-q4_0": "q4_0", "llamacpp-q8_0": "q8_0"}
"""Modes that run T3's backbone on llama.cpp (`synthesis.cpu_fast.engine`, the cpu-fast extra), and the GGUF weight
type of each."""
MODES = ("fp32", "bf16", "int8", "int8-wo", "int4-wo", *ENGINE_MODES)
"""T3's precisions for synthesis (`synthesis.precision`): fp32 gives upstream's tokens."""
CPU_ONLY = ("int8", "int8-wo", "int4-wo", *ENGINE_MODES)
S3GEN_MODES = ("fp32", "bf16")
"""S3Gen flow precisions (`synthesis.vocoder.flow_for_mode`)."""
S3GEN_DECODERS = ("standard", "meanflow")
"""S3Gen's flow decoders: the checkpoint's own (10 CFG steps) or Resemble's distilled meanflow decoder (2 steps, no
CFG batch) that reads the same 25 Hz S3 tokens (`models.loading.load_meanflow_s3gen`)."""
MEANFLOW_REPO = "ResembleAI/chatterbox-turbo"  # where Resemble ships the meanflow S3Gen
MEANFLOW_FILE = "s3gen_meanflow.safetensors"
MEANFLOW_STEPS = 2  # upstream's default for the meanflow decoder (`S3Token2Wav.flow_inference`)

# -- the models the stages load by default (a Hub id each; every one can be set to a local folder) --------------------
DEFAULT_ASR = "openai/whisper-large-v3"  # transcribes recordings; scores WER
DEFAULT_ALIGNER = "jonatasgrosman/wav2vec2-large-xlsr-53-spanish"  # aligns known text to recordings
DEFAULT_DIARIZATION = "pyannote/speaker-diarization-community-1"  # who speaks when, in interviews
DEFAULT_ACCENT_MODEL = "Jzuluaga/accent-id-commonaccent_xlsr-es-spanish"  # scores the accent
DEFAULT_WAVLM_SV = "microsoft/wavlm-base-plus-sv"  # a second speaker similarity

# -- checkpoints --------------------------------------------------------------------------------------------------
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
    # What `models.merge` writes: every file safetensors. The T3 file keeps upstream's name for its
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
