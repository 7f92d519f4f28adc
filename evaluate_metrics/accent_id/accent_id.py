"""Accent identification: how often a Spanish accent classifier (CommonAccent's XLSR model by default, through
speechbrain) hears each clip's target accent, and the mean probability it gives that accent. References are the
project's accent codes (mx, ar, co, cl, pe, pr, ve); classes covering several (Andino-Pacífico: co and pe) count for
each of them.

    >>> accent = evaluate.load("evaluate_metrics/accent_id")
    >>> accent.compute(predictions=[wav], references=["ar"], sampling_rate=24000)  # model=LOCAL_DIR offline
"""

import datasets
import evaluate
import numpy as np

from chatterbox_latam.constants import DEFAULT_ACCENT_MODEL
from chatterbox_latam.evaluation.accent import load_accent_classifier, score_accent


class AccentId(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Zuluaga-Gomez et al., CommonAccent: Exploring Large Acoustic Pretrained Models for Accent "
                     "Classification Based on Common Voice, Interspeech 2023.",
            inputs_description="predictions: mono waveforms (float arrays); references: target accent codes; "
                               "sampling_rate: their rate; model: the classifier (Hub id or local folder).",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, sampling_rate: int = 24_000, model: str = DEFAULT_ACCENT_MODEL):
        classifiers = self.__dict__.setdefault("_classifiers", {})  # loaded once per model
        if model not in classifiers:
            classifiers[model] = load_accent_classifier(model)
        heard = classifiers[model]([np.asarray(p) for p in predictions], sampling_rate)
        scores = [score_accent(h, target) for h, target in zip(heard, references)]
        return {"accent_accuracy": float(np.mean([s["accent_correct"] for s in scores])),
                "accent_prob": float(np.mean([s["accent_prob"] for s in scores])),
                "predicted": [s["accent_label"] for s in scores]}
