"""Trainer callbacks: prompts redrawn each epoch (`PromptEpochCallback`) and audio samples spoken at each
evaluation and logged (`AudioSamplesCallback`)."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
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


class AudioSamplesCallback(TrainerCallback):
    """At each evaluation, synthesises a few validation sentences with the current adapter and logs them as audio
    (TensorBoard `add_audio`, `wandb.Audio`); with `score=True` also the evaluation harness's subset that needs no
    download: speaker similarity to the reference (resemblyzer) and DNSMOS, as `eval/speaker_sim`, `eval/dnsmos`."""

    def __init__(self, synthesize, samples: list[dict[str, Any]], sample_rate: int, score: bool = True):
        self.synthesize = synthesize
        self.samples = samples
        self.sample_rate = sample_rate
        self.score = score

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or not self.samples:
            return
        # Synthesis and scoring draw random numbers (CFM noise, model initialisation); training must not notice.
        python_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            self._evaluate(args, state, model)
        random.setstate(python_state)

    def _evaluate(self, args, state, model):
        clips = []
        for i, sample in enumerate(self.samples):
            wav = self.synthesize(unwrap_model(model), sample)
            clips.append((f"eval_audio/{i}_{sample.get('accent') or 'es'}", wav, sample["text"]))
        scores = self._score(clips) if self.score else {}
        if scores:
            state.log_history.append({**scores, "step": state.global_step})
        self._write(args, state, clips, scores)

    def _score(self, clips) -> dict[str, float]:
        from ..data.audio import resample
        from ..evaluation import metrics

        usable = [(wav, sample) for (_, wav, _), sample in zip(clips, self.samples) if len(wav) > self.sample_rate // 4]
        if not usable:
            return {}
        pairs = [(wav, resample(s["reference"], s["reference_sr"], self.sample_rate)) for wav, s in usable]
        similarity = metrics.speaker_similarity(pairs, self.sample_rate)
        mos = metrics.dnsmos([wav for wav, _ in usable], self.sample_rate)
        return {"eval_speaker_sim": float(np.mean(similarity)), "eval_dnsmos": float(np.mean([m["ovrl"] for m in mos]))}

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

