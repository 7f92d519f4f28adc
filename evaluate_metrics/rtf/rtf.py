"""Real-time factor of synthesis: total synthesis seconds over total audio seconds (below 1.0: faster than real
time).

    >>> rtf = evaluate.load("evaluate_metrics/rtf")
    >>> rtf.compute(predictions=[1.2, 0.8], references=[3.0, 2.0])   # synthesis seconds, audio seconds
    {'rtf': 0.4}
"""

import datasets
import evaluate

from chatterbox_latam.evaluation.metrics import real_time_factor


class Rtf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: synthesis seconds per utterance; references: audio seconds produced.",
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        return {"rtf": real_time_factor(sum(predictions), sum(references))}
