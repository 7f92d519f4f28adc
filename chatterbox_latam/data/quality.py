"""How clean a clip sounds: DNSMOS, a predictor of listeners' ratings of noise and distortion.

Preparation uses it to keep music, noise and distortion out of a training set (`segment_recordings`), the
evaluation as a MOS proxy. Microsoft's DNSMOS P.835 / P.808 models ship with `speechmos` (ONNX), so it runs
offline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .audio import resample


def dnsmos(wavs: Sequence[np.ndarray], sample_rate: int) -> list[dict[str, float]]:
    """DNSMOS per clip: overall (ovrl), signal (sig), background (bak) and P.808 MOS, each 1-5."""
    from speechmos import dnsmos as dnsmos_model

    results = []
    for wav in wavs:
        audio = np.clip(resample(np.asarray(wav, np.float32), sample_rate, 16_000), -1.0, 1.0)
        scores = dnsmos_model.run(audio, sr=16_000)
        results.append({key.removesuffix("_mos"): float(value) for key, value in scores.items()
                        if key.endswith("_mos")})
    return results
