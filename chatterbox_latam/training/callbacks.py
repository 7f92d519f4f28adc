"""Trainer callbacks: prompts redrawn each epoch (`PromptEpochCallback`) and audio samples spoken at each
evaluation, logged and scored (`AudioSamplesCallback`, `ListeningScores`): the scores a checkpoint can be chosen
by (`output.metric_for_best_model`)."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from .trainer import unwrap_model

logger = logging.getLogger(__name__)


class PromptEpochCallback(TrainerCallback):
    """Tells the collator which epoch starts, so each training row draws its prompt (and its unconditional
    coin) anew each epoch. The epoch comes from the trainer's state, which a resumed run restores, so the draws of
    a resumed run are those of an uninterrupted one."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch or 0)


Scorer = Callable[..., dict[str, float]]
"""`(wavs, samples, sample_rate, step=global_step) -> {"eval_<metric>": value}`: how the spoken samples are
scored."""


class AudioSamplesCallback(TrainerCallback):
    """At each evaluation, synthesises a few held-out sentences with the current adapter and logs them as audio
    (TensorBoard `add_audio`, `wandb.Audio`); with `score=True` also scores them (`scorer`, by default
    `ListeningScores`: speaker similarity to the reference, DNSMOS, WER with an ASR, the probability of the
    sample's accent with an accent classifier), logs the scores as
    `eval/<metric>` and adds them to the evaluation's metrics, where `metric_for_best_model` finds them (the
    Trainer keeps the best checkpoint by them). With several processes the first scores and the others receive
    its scores, so every process agrees on the best checkpoint."""

    def __init__(self, synthesize, samples: list[dict[str, Any]], sample_rate: int, score: bool = True,
                 scorer: Scorer | None = None, asr_model: str | None = None, accent_model: str | None = None):
        self.synthesize = synthesize
        self.samples = samples
        self.sample_rate = sample_rate
        self.score = score
        self.scorer = scorer or ListeningScores(asr_model, accent_model)

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        scores: dict[str, float] = {}
        if state.is_world_process_zero and self.samples:
            # Synthesis and scoring draw random numbers (CFM noise, model initialisation); training must not notice.
            python_state = random.getstate()
            with torch.random.fork_rng(devices=[]):
                scores = self._evaluate(args, state, model)
            random.setstate(python_state)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            box = [scores]
            torch.distributed.broadcast_object_list(box, src=0)
            scores = box[0]
        if metrics is not None:
            metrics.update(scores)

    def _evaluate(self, args, state, model) -> dict[str, float]:
        clips = []
        for i, sample in enumerate(self.samples):
            wav = self.synthesize(unwrap_model(model), sample)
            clips.append((f"eval_audio/{i}_{sample.get('accent') or 'es'}", wav, sample["text"]))
        scores = (self.scorer([wav for _, wav, _ in clips], self.samples, self.sample_rate, step=state.global_step)
                  if self.score else {})
        if scores:
            state.log_history.append({**scores, "step": state.global_step})
        self._write(args, state, clips, scores)
        return scores

    def _write(self, args, state, clips, scores):
        report = set(args.report_to or [])
        if "tensorboard" in report:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=os.path.join(args.output_dir, "runs", "audio_samples"))
            for tag, wav, text in clips:
                writer.add_audio(tag, torch.as_tensor(wav).flatten(), state.global_step, sample_rate=self.sample_rate)
                writer.add_text(tag + "/text", text, state.global_step)
            for key, value in scores.items():
                writer.add_scalar(key.replace("eval_", "eval/"), value, state.global_step)
            writer.close()
        if "wandb" in report:
            import wandb

            if wandb.run is not None:
                logged = {tag: wandb.Audio(torch.as_tensor(wav).flatten().numpy(), sample_rate=self.sample_rate,
                                           caption=text) for tag, wav, text in clips}
                logged.update({key.replace("eval_", "eval/"): value for key, value in scores.items()})
                wandb.log(logged, step=state.global_step)


class ListeningScores:
    """The default `Scorer`: speaker similarity of each sample to its reference (resemblyzer) and DNSMOS, both
    local; WER against the sentence when an ASR checkpoint is given and can be loaded (once); the mean probability
    the accent classifier gives each sample's own accent when one is given and loads. A sample too short to score
    (under a quarter of a second) counts as the worst value, so a checkpoint that stops at once never wins."""

    def __init__(self, asr_model: str | None = None, accent_model: str | None = None):
        self.models = {"eval/wer": asr_model, "eval/accent_prob": accent_model}
        self._loaded: dict[str, Callable] = {}

    def _scorer(self, metric: str) -> Callable | None:
        """The model that scores `metric`, loaded on first use; none when not asked for or not loadable (once
        warned)."""
        from ..evaluation import accent, metrics

        model = self.models[metric]
        if model and metric not in self._loaded:
            load = metrics.load_asr if metric == "eval/wer" else accent.load_accent_classifier
            try:
                self._loaded[metric] = load(model)
            except metrics.MetricModelUnavailable as error:
                logger.warning("%s is not scored during training: %s", metric, error)
                self.models[metric] = None
        return self._loaded.get(metric)

    def __call__(self, wavs, samples, sample_rate, step: int | None = None) -> dict[str, float]:
        from ..data.audio import resample
        from ..evaluation import metrics

        usable = [i for i, wav in enumerate(wavs) if len(wav) > sample_rate // 4]
        n = len(wavs)
        similarity = metrics.speaker_similarity(
            [(wavs[i], resample(samples[i]["reference"], samples[i]["reference_sr"], sample_rate)) for i in usable],
            sample_rate) if usable else []
        mos = metrics.dnsmos([wavs[i] for i in usable], sample_rate) if usable else []
        # unusable samples count as similarity 0 and DNSMOS 1 (the scales' floors)
        scores = {"eval_speaker_sim": sum(similarity) / n,
                  "eval_dnsmos": (sum(m["ovrl"] for m in mos) + 1.0 * (n - len(usable))) / n}
        asr = self._scorer("eval/wer")
        if asr is not None:  # the evaluation's WER (Spanish normalisation); an unusable sample heard as nothing
            heard = dict(zip(usable, asr([wavs[i] for i in usable], sample_rate) if usable else []))
            rates = metrics.error_rates([s["text"] for s in samples], [heard.get(i, "") for i in range(n)])
            scores["eval_wer"] = rates["wer_spanish"]
        classifier = self._scorer("eval/accent_prob")
        if classifier is not None:  # an unusable sample gives its accent probability 0
            from ..evaluation.accent import score_accent

            heard = classifier([wavs[i] for i in usable], sample_rate) if usable else []
            scores["eval_accent_prob"] = sum(score_accent(h, samples[i]["accent"])["accent_prob"]
                                             for i, h in zip(usable, heard)) / n
        return scores
