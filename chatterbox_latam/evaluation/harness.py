"""The evaluation harness: synthesise the test sentences with each system, score them, write a readable report.

Systems: the checkpoint under test (`finetuned`), optionally its base (`base`), any number of other models to
compare with (`compare`: repo ids or folders, e.g. the language pack a fine-tune must beat), and the test
recordings themselves (`ground_truth`, the ceiling for WER, MOS and similarity). Each sentence is spoken with a
reference from the same speaker (a different utterance: the prepared dataset's prompt; a sentence whose speaker
has no other clip is left out and counted, never spoken from its own audio). Scores: WER/CER (two
normalisations), speaker similarity to the reference, DNSMOS, the accent a classifier hears (`accent.py`), RTF;
per sample, per system, per accent, against the project's targets (WER < 15%, MOS > 3.5, similarity > 0.85, RTF <
1.0). Each sentence is spoken in its own accent: per-accent adapters each speak their accent's sentences.
Outputs in `output_dir`: `results.json`, `report.md`, `plots/*.png`, and the audio under `audio/<system>/`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import ACCENTS
from ..data.audio import resample
from ..synthesis.config import GenerationSettings
from ..utils import write_wav
from . import accent, metrics
from .config import EvalConfig
from .targets import cloning_by_reference_length, expressivity
from .report import TARGETS, write_plots, write_report
from .testset import (  # noqa: F401 (load_test_items: the harness's API)
    TestItem,
    load_test_items,
    protocol_items,
    protocol_list_digest,
    protocol_list_path,
)

logger = logging.getLogger(__name__)

"""Upstream's guidance weight: every system but the fine-tune is decoded at it, and the quality guard too."""

Transcriber = Callable[[Sequence[np.ndarray], int], list[str]]


def spoken_accent(item: TestItem) -> str | None:
    """The accent a sentence is spoken in (its adapter among per-accent ones, its text normalisation)."""
    return item.accent if item.accent in ACCENTS else None


def synthesize_all(synthesizer, items: list[TestItem], out_dir: Path,
                   settings: GenerationSettings) -> list[dict[str, Any]]:
    """Speaks every test sentence with its reference voice; records synthesis time and writes the WAVs."""
    from tqdm.auto import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for item in tqdm(items, desc=f"synthesise {out_dir.name}", unit="sentence"):
        start = time.perf_counter()
        wav = synthesizer.synthesize(item.text, item.reference, item.sample_rate, settings,
                                     accent=spoken_accent(item))
        elapsed = time.perf_counter() - start
        write_wav(out_dir / f"{item.id}.wav", wav, synthesizer.sr)
        outputs.append({"wav": wav, "sr": synthesizer.sr, "synthesis_seconds": elapsed})
    return outputs


def score(items: list[TestItem], outputs: list[dict[str, Any]], wanted: Sequence[str],
          transcriber: Transcriber | None, wavlm: Callable | None = None,
          utmos: Callable | None = None, classifier: accent.Classifier | None = None,
          protocol_sv: Callable | None = None, normalizers: Sequence[str] = metrics.DEFAULT_NORMALIZERS
          ) -> list[dict[str, Any]]:
    """Per-sample scores of one system's outputs; the optional scorers come from `metrics.load_*` (and the
    protocol's speaker verification from `wavlm_ecapa`)."""
    samples = [{"id": it.id, "text": it.text, "speaker_id": it.speaker_id, "accent": it.accent,
                "audio_seconds": len(o["wav"]) / o["sr"]} for it, o in zip(items, outputs)]
    sr = outputs[0]["sr"]
    wavs = [o["wav"] for o in outputs]
    if {"wer", "cer"} & set(wanted) and transcriber is not None:
        for sample, hypothesis in zip(samples, transcriber(wavs, sr)):
            sample["transcript"] = hypothesis
            sample.update(metrics.error_rates([sample["text"]], [hypothesis], normalizers))
    if "speaker_sim" in wanted:
        pairs = [(o["wav"], it.reference) for it, o in zip(items, outputs)]
        same_rate = [(w, resample(r, it.sample_rate, sr)) for (w, r), it in zip(pairs, items)]
        for sample, value in zip(samples, metrics.speaker_similarity(same_rate, sr)):
            sample["speaker_sim"] = value
        if wavlm is not None:
            for sample, value in zip(samples, wavlm(same_rate, sr)):
                sample["speaker_sim_wavlm"] = value
        if protocol_sv is not None:
            for sample, value in zip(samples, protocol_sv(same_rate, sr)):
                sample["speaker_sim_seed_tts_eval"] = value
    if "mos" in wanted:
        for sample, value in zip(samples, metrics.dnsmos(wavs, sr)):
            sample["mos"] = value["ovrl"]
            sample["dnsmos"] = value
        if utmos is not None:
            for sample, value in zip(samples, utmos(wavs, sr)):
                sample["utmos"] = value
    if "accent" in wanted and classifier is not None:
        for sample, prediction in zip(samples, classifier(wavs, sr)):
            if sample["accent"] in ACCENTS:
                sample.update(accent.score_accent(prediction, sample["accent"]))
            else:
                sample["accent_label"] = prediction["label"]
    if "rtf" in wanted:
        for sample, output in zip(samples, outputs):
            if "synthesis_seconds" in output:
                sample["synthesis_seconds"] = output["synthesis_seconds"]
                sample["rtf"] = metrics.real_time_factor(output["synthesis_seconds"], sample["audio_seconds"])
    return samples


def aggregate(samples: list[dict[str, Any]]) -> dict[str, float]:
    """System-level numbers: corpus WER/CER, mean similarity, MOS and accent scores, total-time RTF."""
    result: dict[str, float] = {"n": len(samples)}
    transcribed = [s for s in samples if "transcript" in s]
    if transcribed:
        result.update(metrics.error_rates([s["text"] for s in transcribed], [s["transcript"] for s in transcribed]))
    if any("wer_seed_tts_eval" in s for s in samples):  # the protocol averages per sentence, not over the corpus
        result["wer_seed_tts_eval"] = float(np.mean([s["wer_seed_tts_eval"] for s in samples
                                                     if "wer_seed_tts_eval" in s]))
    for key, name in (("speaker_sim",) * 2, ("speaker_sim_wavlm",) * 2, ("speaker_sim_seed_tts_eval",) * 2,
                      ("mos",) * 2, ("utmos",) * 2,
                      ("accent_correct", "accent_accuracy"), ("accent_prob",) * 2):
        values = [s[key] for s in samples if key in s]
        if values:
            result[name] = float(np.mean(values))
    timed = [s for s in samples if "synthesis_seconds" in s]
    if timed:
        result["rtf"] = metrics.real_time_factor(sum(s["synthesis_seconds"] for s in timed),
                                                 sum(s["audio_seconds"] for s in timed))
    return result


def system_name(source: str) -> str:
    """A short name for a compared system: a repo's name or a folder's name (`:v3` kept)."""
    name, _, t3_model = source.partition(":") if not Path(source).exists() else (source, "", "")
    return Path(name.rstrip("/")).name + (f"_{t3_model}" if t3_model else "")


def _adapter_t3_model(checkpoint: str) -> str | None:
    """The `t3_model` (v2 / v3) an adapter folder was trained on, from its adapter.json."""
    from ..constants import T3_MODELS
    from ..models.lora import is_adapter_dir, read_adapter_metadata

    if not is_adapter_dir(checkpoint):
        return None
    variant = read_adapter_metadata(checkpoint).get("model_variant")
    return next((name for name, layout in T3_MODELS.items() if layout == variant), None)


def load_system(source: str, config: EvalConfig, t3_model: str | None = None):
    """A model to score beside the fine-tune: a folder or repo id, `REPO:v3` for `ResembleAI/chatterbox`'s v3 T3;
    decoded as upstream decodes its generation."""
    from ..synthesis.tts import ChatterboxLatamTTS

    t3_model = t3_model or config.t3_model
    if not Path(source).exists() and ":" in source:
        source, _, t3_model = source.partition(":")
    return capped(ChatterboxLatamTTS.from_pretrained(source, config.device, t3_model=t3_model), config)


def capped(model, config: EvalConfig):
    """`model` with `--max_new_tokens` as its cap on every sentence's token budget (`token_cap`)."""
    model.token_cap = config.max_new_tokens
    return model


def measure_targets(synthesizer, name: str, items: list[TestItem], seed: int, measured: dict[str, dict],
                  pool: list[TestItem]) -> None:
    """The project's targets (`targets.py`) for one system on `items`, at upstream's synthesis settings (T3 fp32, its
    own S3Gen): the models are compared, not the speed settings. Cloning references come from `pool` (the whole
    test set)."""
    synthesizer.set_mode("fp32")
    synthesizer.set_s3gen()
    measured["expressivity"][name] = expressivity(
        lambda item, exaggeration: synthesizer.synthesize(item.text, item.reference, item.sample_rate,
                                                          exaggeration=exaggeration, seed=seed),
        items, synthesizer.sr)
    measured["cloning"][name] = cloning_by_reference_length(
        lambda item, reference: synthesizer.synthesize(item.text, reference, item.sample_rate, seed=seed),
        items, synthesizer.sr, metrics.speaker_similarity, pool)


def evaluate_checkpoint(config: EvalConfig, transcriber: Transcriber | None = None,
                        classifier: accent.Classifier | None = None) -> dict[str, Any]:
    """Runs the whole evaluation (see the module docstring) and returns what `results.json` holds.

    `transcriber` replaces the ASR model (a callable `(wavs, sample_rate) -> texts`) and `classifier` the accent
    classifier (`accent.load_accent_classifier`'s kind, with its class `labels`); by default the `asr_model` and
    `accent_model` checkpoints are loaded, and one that cannot be is skipped with the reason in the report.

    Args:
        config: The systems (`checkpoint`, `compare_base`, `compare`), the test data, the metrics and their models,
            the synthesis settings and the output folder (`training/evaluate.py`'s flags).
        transcriber: The ASR, `(wavs, sample_rate) -> texts`, instead of loading `config.asr_model`.
        classifier: The accent classifier instead of loading `config.accent_model`.

    Returns:
        What `results.json` holds: per system its samples and aggregates (overall, per accent), the settings, the
        skipped metrics with their reasons; `report.md`, the plots and the audio are written beside it.

    Raises:
        EvaluationDataError: The test data has no usable test split or sentences (the message names what it has).
        ValueError: Systems that cannot be scored together (a base that cannot be found, a system named twice).
    """
    from ..models.lora import is_adapter_dir, read_adapter_metadata
    from ..synthesis.tts import ChatterboxLatamTTS

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    wanted = list(config.metrics)  # EvalConfig has expanded "all"
    without_reference: list[str] = []
    if config.protocol:
        items = protocol_items(config.protocol, config.test_data, config.max_samples, without_reference, config.split)
    else:
        items = load_test_items(config.test_data, config.max_samples, without_reference, config.split)
    # Hub models load once, up front: an unreachable one is reported before any synthesis, the rest still runs.
    skipped: dict[str, str] = {}

    def optional(name: str, load: Callable[[], Callable]) -> Callable | None:
        try:
            return load()
        except metrics.MetricModelUnavailable as error:
            skipped[name] = str(error)
            return None

    if transcriber is None and {"wer", "cer"} & set(wanted):
        transcriber = optional("WER/CER", lambda: metrics.load_asr(config.asr_model, config.device))
    wavlm = None
    if config.wavlm_model and "speaker_sim" in wanted:
        wavlm = optional("WavLM speaker similarity", lambda: metrics.load_wavlm(config.wavlm_model))
    utmos = None
    if config.utmos and "mos" in wanted:
        utmos = optional("UTMOS", lambda: metrics.load_utmos(config.utmos_checkpoint))
    protocol_sv = None
    if config.protocol and "speaker_sim" in wanted:
        from .wavlm_ecapa import load_wavlm_ecapa

        protocol_sv = optional("seed-tts-eval speaker similarity",
                               lambda: load_wavlm_ecapa(config.sv_checkpoint, config.device))
    if classifier is None and "accent" in wanted:
        classifier = optional("accent identification",
                              lambda: accent.load_accent_classifier(config.accent_model, config.device))

    systems: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    finetuned = capped(ChatterboxLatamTTS.from_pretrained(config.checkpoint, config.device,
                                                          base_model=config.base_model, mode=config.mode,
                                                          t3_model=config.t3_model), config)
    finetuned.set_s3gen(config.s3gen_mode, config.cfm_steps, config.s3gen_prompt_seconds, config.s3gen,
                        config.meanflow_model)
    finetuned.alignment = config.alignment
    # every system speaks with the evaluation's settings; the cap and the alignment heuristics are the models' own
    # (`capped`, `finetuned.alignment`), so that the systems below can differ in them
    settings = GenerationSettings.of(config).replace(alignment=None, max_new_tokens=None)
    upstream = settings.replace(cfg_weight=GenerationSettings.cfg_weight)
    if len(finetuned.accents) > 1:  # per-accent adapters: each speaks its own accent's sentences
        without_adapter = [it.id for it in items if it.accent not in finetuned.accents]
        items = [it for it in items if it.accent in finetuned.accents]
        if not items:
            raise ValueError(f"{config.checkpoint} has adapters for {finetuned.accents}, and no test sentence is in "
                             "one of those accents.")
    else:
        without_adapter = []
    systems["finetuned"] = synthesize_all(finetuned, items, output_dir / "audio" / "finetuned", settings)
    mode, generation, alignment = finetuned.mode, finetuned.generation, finetuned.runs_alignment()
    s3gen_changes = finetuned.s3gen_changes
    if mode != "fp32" or finetuned.s3gen_changes or settings.cfg_weight != upstream.cfg_weight:
        # the quality guard: the same sentences, voices and seed at upstream's settings beside the fast ones
        finetuned.set_mode("fp32")
        finetuned.set_s3gen()
        systems["finetuned_fp32"] = synthesize_all(finetuned, items, output_dir / "audio" / "finetuned_fp32",
                                                   upstream)
    if finetuned.alignment_matters():
        # the heuristics read attention maps the adapter changed: the other setting, same sentences and seed
        finetuned.alignment = not alignment
        name = f"finetuned_alignment_{'on' if finetuned.alignment else 'off'}"
        systems[name] = synthesize_all(finetuned, items, output_dir / "audio" / name, settings)
    measured: dict[str, dict[str, Any]] = {"expressivity": {}, "cloning": {}}
    if config.targets:
        finetuned.alignment = alignment
        measure_targets(finetuned, "finetuned", items[: config.targets_sentences], config.seed, measured, items)
    del finetuned
    base = config.base_model or (read_adapter_metadata(config.checkpoint).get("base_model")
                                 if is_adapter_dir(config.checkpoint) else None)
    if config.compare_base and not base:
        raise ValueError("--compare_base needs the base model: pass --base_model (the checkpoint is not an "
                         "adapter folder that names it).")
    if config.compare_base or (config.targets and base):
        base_model = load_system(base, config, _adapter_t3_model(config.checkpoint))
        if config.compare_base:
            systems["base"] = synthesize_all(base_model, items, output_dir / "audio" / "base", upstream)
        if config.targets:
            measure_targets(base_model, "base", items[: config.targets_sentences], config.seed, measured, items)
        del base_model
    elif config.targets:
        skipped["targets: base"] = ("the base is unknown (the checkpoint is not an adapter that names it): pass "
                                  "--base_model to measure it beside the fine-tune.")
    for other in config.compare:
        name = system_name(other)
        if name in systems:
            raise ValueError(f"--compare {other}: a system named {name!r} is already scored; compare it once.")
        systems[name] = synthesize_all(load_system(other, config), items, output_dir / "audio" / name, upstream)
    if not config.protocol:  # a protocol's sentences have no recording
        systems["ground_truth"] = [{"wav": it.truth, "sr": it.sample_rate} for it in items]
        truth_dir = output_dir / "audio" / "ground_truth"
        truth_dir.mkdir(parents=True, exist_ok=True)
        for item in items:  # beside the synthesised audio, for listening and for the human MOS kit
            write_wav(truth_dir / f"{item.id}.wav", item.truth, item.sample_rate)

    decoding = (f"{generation.name} (repetition penalty {generation.repetition_penalty}, alignment heuristics "
                f"{'on' if alignment else 'off'}{', last token dropped' if generation.drop_last_token else ''})")
    results: dict[str, Any] = {"checkpoint": config.checkpoint, "test_data": config.test_data, "split": config.split,
                               "n_sentences": len(items), "sentences_without_reference": without_reference,
                               "sentences_without_adapter": without_adapter,
                               "decoding": decoding, "compare": list(config.compare),
                               "device": config.device, "mode": mode, "cfg_weight": config.cfg_weight,
                               "max_new_tokens": config.max_new_tokens,
                               "s3gen": config.s3gen, "s3gen_changes": s3gen_changes,
                               "s3gen_mode": config.s3gen_mode, "cfm_steps": config.cfm_steps,
                               "s3gen_prompt_seconds": config.s3gen_prompt_seconds, "metrics": wanted,
                               "targets": {k: list(v) for k, v in TARGETS.items()}, "skipped": skipped,
                               "systems": {}, **({"measured_targets": measured} if config.targets else {})}
    normalizers = metrics.DEFAULT_NORMALIZERS
    if config.protocol:
        normalizers = (*normalizers, "seed_tts_eval")
        results["protocol"] = {"name": config.protocol, "list": protocol_list_path(config.protocol),
                               "list_sha256": protocol_list_digest(config.protocol), "asr_model": config.asr_model,
                               "sv_checkpoint": config.sv_checkpoint}
    if classifier is not None:
        results.update(accent_model=config.accent_model, accent_labels=classifier.labels,
                       accent_shared_classes=accent.shared_classes(classifier.labels))
    for name, outputs in systems.items():
        samples = score(items, outputs, wanted, transcriber, wavlm, utmos, classifier, protocol_sv, normalizers)
        per_accent = defaultdict(list)
        for sample in samples:
            per_accent[sample["accent"]].append(sample)
        results["systems"][name] = {
            "aggregate": aggregate(samples),
            "per_accent": {code: aggregate(group) for code, group in per_accent.items()},
            "samples": samples,
            **({"accent": accent.accent_table(samples)} if classifier is not None else {}),
        }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    write_plots(results, output_dir)
    write_report(results, output_dir)
    return results

