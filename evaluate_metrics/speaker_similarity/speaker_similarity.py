"""Speaker similarity of generated speech to its reference: cosine of resemblyzer embeddings (weights ship with
the package), mean over pairs.

    >>> sim = evaluate.load("evaluate_metrics/speaker_similarity")
    >>> sim.compute(predictions=[generated_wav], references=[reference_wav], sampling_rate=24000)
"""

import datasets
import evaluate
import numpy as np

from chatterbox_latam.evaluation.metrics import speaker_similarity


class SpeakerSimilarity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions, references: mono waveforms (float arrays); sampling_rate: their rate.",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")),
                                        "references": datasets.Sequence(datasets.Value("float32"))}),
        )

    def _compute(self, predictions, references, sampling_rate: int = 24_000):
        scores = speaker_similarity([(np.asarray(p), np.asarray(r)) for p, r in zip(predictions, references)],
                                    sampling_rate)
        return {"speaker_similarity": float(np.mean(scores)), "scores": scores}
