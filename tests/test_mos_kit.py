"""Human MOS kit: blinded shuffled samples with a key, a rating page, and MOS with 95% confidence intervals."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from scipy import stats

from chatterbox_latam.evaluation.listening_test import (
    prepare_listening_test,
    score_listening_test,
)


@pytest.fixture
def eval_dir(corpus, tmp_path):
    """An evaluation's output layout: audio/<system>/<id>.wav plus results.json with the texts."""
    root = tmp_path / "eval"
    for system, speaker in (("finetuned", "speaker_001"), ("base", "speaker_002"), ("ground_truth", "speaker_003")):
        (root / "audio" / system).mkdir(parents=True)
        for n in (1, 2):
            shutil.copy(corpus / "audio" / speaker / f"audio_00{n}.wav", root / "audio" / system / f"clip{n}.wav")
    samples = [{"id": f"clip{n}", "text": f"Frase número {n}."} for n in (1, 2)]
    (root / "results.json").write_text(json.dumps({"systems": {"finetuned": {"samples": samples}}}))
    return root


def test_listening_test_is_blinded_shuffled_and_complete(eval_dir, tmp_path):
    page = prepare_listening_test(eval_dir, tmp_path / "mos", seed=1)
    with open(tmp_path / "mos" / "key.csv", encoding="utf-8") as handle:
        key = list(csv.DictReader(handle))
    assert len(key) == 6 and {row["system"] for row in key} == {"finetuned", "base", "ground_truth"}
    assert [row["system"] for row in key] != sorted(row["system"] for row in key)  # shuffled
    html = page.read_text(encoding="utf-8")
    for row in key:
        assert row["sample"].startswith("sample_") and row["system"] not in row["sample"]  # blinded
        # the key is right: each anonymous sample is its system's clip, byte for byte
        sample = (tmp_path / "mos" / "audio" / f"{row['sample']}.wav").read_bytes()
        assert sample == (eval_dir / "audio" / row["system"] / f"{row['id']}.wav").read_bytes()
        assert f'name="{row["sample"]}" value="5"' in html
    assert "finetuned" not in html and "ground_truth" not in html
    assert "Frase número 1." in html


def test_scores_give_mos_with_confidence_intervals(eval_dir, tmp_path):
    prepare_listening_test(eval_dir, tmp_path / "mos")
    with open(tmp_path / "mos" / "key.csv", encoding="utf-8") as handle:
        key = list(csv.DictReader(handle))
    wanted = {"ground_truth": [5, 4, 5, 4], "finetuned": [4, 3, 4, 4], "base": [2, 3, 2, 1]}
    given = {system: iter(values) for system, values in wanted.items()}
    files = []
    for rater in ("ana", "luis"):
        path = tmp_path / f"ratings-{rater}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["rater", "sample", "score"])
            for row in key:
                writer.writerow([rater, row["sample"], next(given[row["system"]])])
        files.append(path)
    summary = score_listening_test(tmp_path / "mos" / "key.csv", files)
    for system, values in wanted.items():
        values = np.array(values, dtype=float)
        assert summary[system]["mos"] == pytest.approx(values.mean())
        assert summary[system]["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * values.std(ddof=1) / 2)
        assert summary[system]["ratings"] == 4 and summary[system]["raters"] == 2
    assert summary["ground_truth"]["mos"] > summary["finetuned"]["mos"] > summary["base"]["mos"]
