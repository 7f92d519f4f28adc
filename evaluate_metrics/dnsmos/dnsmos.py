"""DNSMOS (Microsoft's P.835 / P.808 MOS predictor; speechmos ships the ONNX models) as a MOS proxy, mean over clips.

    >>> mos = evaluate.load("evaluate_metrics/dnsmos")
    >>> mos.compute(predictions=[wav], sampling_rate=24000)["ovrl"]
"""

import datasets
import evaluate
import numpy as np

from chatterbox_latam.evaluation.metrics import dnsmos


class Dnsmos(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Reddy et al., DNSMOS P.835, ICASSP 2022.",
            inputs_description="predictions: mono waveforms (float arrays); sampling_rate: their rate.",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32"))}),
        )

    def _compute(self, predictions, sampling_rate: int = 24_000):
        scores = dnsmos([np.asarray(p) for p in predictions], sampling_rate)
        return {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
