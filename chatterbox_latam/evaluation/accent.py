"""Accent identification: does the Argentine adapter sound rioplatense? A Spanish accent classifier gives each clip
a predicted accent class and the probability of every class; WER, similarity and MOS are blind to accent.

The default classifier is CommonAccent's (Zuluaga-Gomez et al., 2023): XLSR-53 fine-tuned on Common Voice's
self-reported Spanish accents, run through speechbrain (`foreign_class` with the model's own `custom_interface.py`).
Its classes are regions, not countries, so `ACCENT_CLASSES` maps them onto the project's accent codes in one table:
Colombia and Peru share "Andino-Pacífico" (the classifier cannot tell them apart), Puerto Rico and Venezuela share
"Caribe", and the Spanish classes cover no Latin-American accent. Another classifier (`--accent_model`) whose labels
name countries or the project's codes maps by the same table.
"""

from __future__ import annotations

import re
import sys
import types
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import DEFAULT_ACCENT_MODEL
from ..constants import ACCENTS
from ..data.audio import resample
from ..utils import default_device
from .metrics import MetricModelUnavailable


@dataclass(frozen=True)
class AccentClass:
    key: str
    """The words (lower case, no diacritics or punctuation) a classifier's label holds, at a word's start
    (CommonAccent's labels lose their hyphens: "ANDINOPACIFICO ..."); a project code must be the whole label."""
    accents: tuple[str, ...]
    """The project's accent codes the class covers (none: not a Latin-American accent the project trains)."""
    covers: str
    """What the class covers, as CommonAccent's Spanish classes say it."""


# Regions first: a region's label also names countries ("Caribe: ..., Colombia caribeña, México caribeño, ...").
ACCENT_CLASSES = (
    AccentClass("caribe", ("pr", "ve"), "Caribe: Cuba, Venezuela, Puerto Rico, República Dominicana, Panamá, "
                                        "Colombia caribeña, México caribeño, Costa del golfo de México"),
    AccentClass("andino", ("co", "pe"), "Andino-Pacífico: Colombia, Perú, Ecuador, oeste de Bolivia y Venezuela "
                                        "andina"),
    AccentClass("rioplatense", ("ar",), "Rioplatense: Argentina, Uruguay, este de Bolivia, Paraguay"),
    AccentClass("chileno", ("cl",), "Chileno: Chile, Cuyo"),
    AccentClass("america central", (), "América central"),
    AccentClass("espana", (), "España (Norte, Centro-Sur, Sur peninsular, Islas Canarias)"),
    AccentClass("mexico", ("mx",), "México"),
    # a classifier labelled by country or by the project's codes
    AccentClass("argentina", ("ar",), "Argentina"),
    AccentClass("colombia", ("co",), "Colombia"),
    AccentClass("chile", ("cl",), "Chile"),
    AccentClass("peru", ("pe",), "Perú"),
    AccentClass("puerto rico", ("pr",), "Puerto Rico"),
    AccentClass("venezuela", ("ve",), "Venezuela"),
    *(AccentClass(code, (code,), f"the project's code {code}") for code in ACCENTS),
)


def _words(label: str) -> str:
    text = unicodedata.normalize("NFKD", str(label)).encode("ascii", "ignore").decode().lower()
    return " " + re.sub(r"[^a-z]+", " ", text).strip() + " "


def accents_of(label: str) -> tuple[str, ...]:
    """The project's accents a classifier label covers (by `ACCENT_CLASSES`, first match; none when unknown)."""
    words = _words(label)
    for accent_class in ACCENT_CLASSES:
        key = accent_class.key
        if words.strip() == key if key in ACCENTS else f" {key}" in words:
            return accent_class.accents
    return ()


def shared_classes(labels: Iterable[str]) -> dict[str, list[str]]:
    """Classes that cover more than one project accent: {label: accents}, for the report's caveat."""
    return {label: list(accents_of(label)) for label in labels if len(accents_of(label)) > 1}


def install_speechbrain_05_names() -> None:
    """Lets hyperparameter files written for speechbrain 0.5 load on 1.x: CommonAccent's models name the wav2vec2
    wrapper `speechbrain.lobes.models.huggingface_wav2vec.HuggingFaceWav2Vec2`, which speechbrain 1.0 moved (same
    arguments, same checkpoint keys) without leaving a redirect."""
    old = "speechbrain.lobes.models.huggingface_wav2vec"
    if old in sys.modules:
        return
    try:
        __import__(old)
        return
    except ImportError:
        pass
    import speechbrain.lobes.models as parent
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2

    module = types.ModuleType(old)
    module.HuggingFaceWav2Vec2 = Wav2Vec2
    sys.modules[old] = module
    parent.huggingface_wav2vec = module  # hyperpyyaml finds classes by attribute from the package down


Classifier = Callable[[Sequence[np.ndarray], int], list[dict[str, Any]]]


def load_accent_classifier(model: str = DEFAULT_ACCENT_MODEL, device: str | None = None,
                           savedir: str | None = None) -> Classifier:
    """A classifier `(wavs, sample_rate) -> [{"label", "probabilities": {label: p}}]` over a speechbrain accent
    model with a `custom_interface.py` (CommonAccent's layout: Hub id or local folder). Loaded once; clips are
    classified one at a time (no padding in the pooled statistics)."""
    import torch

    install_speechbrain_05_names()
    from speechbrain.inference.interfaces import foreign_class

    device = device or default_device()
    overrides = {}
    folder = Path(model)
    if folder.is_dir():  # a downloaded copy: its hyperparams name the Hub repo and wav2vec2's, point them here
        hyperparams = folder / "hyperparams.yaml"
        text = hyperparams.read_text(encoding="utf-8") if hyperparams.exists() else ""
        if re.search(r"^pretrained_path:", text, re.M):
            overrides["pretrained_path"] = folder.resolve().as_posix()
        if re.search(r"^wav2vec2_hub:", text, re.M) and (folder / "wav2vec2_hub").is_dir():
            overrides["wav2vec2_hub"] = (folder / "wav2vec2_hub").resolve().as_posix()
    try:
        classifier = foreign_class(source=model, pymodule_file="custom_interface.py",
                                   classname="CustomEncoderWav2vec2Classifier", savedir=savedir,
                                   run_opts={"device": device}, overrides=overrides)
    except (OSError, ValueError, RuntimeError) as error:
        raise MetricModelUnavailable(
            f"accent classifier '{model}' could not be loaded ({error.__class__.__name__}: {str(error)[:200]}). "
            f"Without network, download it once (`hf download {model} --local-dir DIR`, and the wav2vec2 its "
            "hyperparams.yaml names, e.g. `hf download facebook/wav2vec2-large-xlsr-53 --local-dir DIR/wav2vec2_hub`) "
            "and pass --accent_model DIR."
        ) from error
    encoder = classifier.hparams.label_encoder
    labels = [encoder.ind2lab[i] for i in range(len(encoder.ind2lab))]

    @torch.inference_mode()
    def classify(wavs: Sequence[np.ndarray], sample_rate: int) -> list[dict[str, Any]]:
        results = []
        for wav in wavs:
            signal = torch.from_numpy(resample(np.asarray(wav, np.float32), sample_rate, 16_000))[None]
            out, _, index, _ = classifier.classify_batch(signal, torch.ones(1))
            out = out.reshape(-1).double().cpu()
            # CommonAccent's interface returns log-probabilities; another may return probabilities or logits
            if torch.allclose(out.exp().sum(), torch.tensor(1.0, dtype=out.dtype), atol=1e-3):
                probabilities = out.exp()
            elif out.min() >= 0 and torch.allclose(out.sum(), torch.tensor(1.0, dtype=out.dtype), atol=1e-3):
                probabilities = out
            else:
                probabilities = out.softmax(-1)
            results.append({"label": labels[int(index.reshape(-1)[0])],
                            "probabilities": {label: float(p) for label, p in zip(labels, probabilities)}})
        return results

    classify.labels = labels
    return classify


def score_accent(prediction: dict[str, Any], target: str) -> dict[str, Any]:
    """One clip's accent scores against its target accent code: the predicted class, whether it covers the target,
    and the probability of the classes that cover it."""
    return {"accent_label": prediction["label"],
            "accent_correct": float(target in accents_of(prediction["label"])),
            "accent_prob": float(sum(p for label, p in prediction["probabilities"].items()
                                     if target in accents_of(label)))}


def accent_table(samples: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per target accent: n, accuracy of the predicted accent, mean probability of the target's classes, and the
    predicted classes counted (a row of the confusion matrix)."""
    by_accent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in samples:
        if "accent_correct" in sample:  # a sample of a known accent
            by_accent[sample["accent"]].append(sample)
    return {accent: {"n": len(group),
                     "accuracy": float(np.mean([s["accent_correct"] for s in group])),
                     "target_prob": float(np.mean([s["accent_prob"] for s in group])),
                     "predicted": dict(Counter(s["accent_label"] for s in group))}
            for accent, group in sorted(by_accent.items())}


def accent_report(results: dict[str, Any]) -> list[str]:
    """The report's accent section: accuracy and target probability per system and target accent, the confusion
    plot, and which classes stand for more than one accent."""
    systems = [name for name, system in results["systems"].items() if system.get("accent")]
    if not systems:
        return []
    accents = sorted({a for name in systems for a in results["systems"][name]["accent"]})
    lines = ["## Accent identification", "",
             f"Classifier: `{results.get('accent_model')}`. Accuracy: share of clips whose predicted class covers the "
             "target accent; p(target): mean probability of the classes that cover it."
             + (" `ground_truth` (the test recordings) is the classifier's own ceiling on this data."
                if "ground_truth" in systems else ""), "",
             "| system | " + " | ".join(f"{a} accuracy | {a} p(target)" for a in accents) + " |",
             "|---|" + "---|---|" * len(accents)]
    for name in systems:
        table = results["systems"][name]["accent"]
        cells = [f"{table[a]['accuracy']:.2f} | {table[a]['target_prob']:.2f}" if a in table else "– | –"
                 for a in accents]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for label, covered in (results.get("accent_shared_classes") or {}).items():
        lines.append(f"\nThe class \"{label}\" covers {', '.join(covered)}: the classifier cannot tell them apart.")
    lines += ["", "![accent confusion](plots/accent_confusion.png)", ""]
    return lines


def write_confusion_plot(results: dict[str, Any], plots) -> None:
    """plots/accent_confusion.png: per system, target accents (rows) against predicted classes (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [name for name, system in results["systems"].items() if system.get("accent")]
    if not systems:
        return
    labels = list(results.get("accent_labels") or sorted({label for name in systems for row in
                                                          results["systems"][name]["accent"].values()
                                                          for label in row["predicted"]}))
    short = [short_label(label) for label in labels]
    fig, axes = plt.subplots(1, len(systems), figsize=(1.2 + 0.9 * len(labels) * len(systems), 3.6), squeeze=False)
    for ax, name in zip(axes[0], systems):
        table = results["systems"][name]["accent"]
        targets = sorted(table)
        counts = np.array([[table[t]["predicted"].get(label, 0) / table[t]["n"] for label in labels]
                           for t in targets])
        ax.imshow(counts, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(labels)), short, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(targets)), targets)
        for (i, j), value in np.ndenumerate(counts):
            if value:
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(plots / "accent_confusion.png", dpi=100)
    plt.close(fig)


def short_label(label: str) -> str:
    """A class label short enough for a plot axis: up to its first colon or comma, 18 characters at most."""
    head = re.split(r"[:,(]", str(label))[0].strip()
    return head if len(head) <= 18 else head[:17] + "…"
