"""WER and CER for Spanish TTS evaluation, under a Spanish-aware normaliser (accents, ñ, ü kept; numbers spelled
out) and Whisper's basic normaliser (diacritics removed). jiwer does the counting.

    >>> import evaluate
    >>> wer = evaluate.load("evaluate_metrics/wer_es")
    >>> wer.compute(predictions=["el nino esta aqui"], references=["El niño está aquí."])["wer_spanish"]
    0.75
"""

import datasets
import evaluate

from chatterbox_latam.evaluation.metrics import error_rates


class WerEs(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: ASR transcripts of synthesised speech; references: the input texts.",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        return error_rates(references, predictions)
