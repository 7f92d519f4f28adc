"""A human MOS listening test: blinded, shuffled samples, a rating page, and MOS with 95% confidence intervals.

1. `prepare_listening_test(eval_dir, output_dir)` takes the audio an evaluation wrote (`audio/<system>/<id>.wav`:
   finetuned, base, ground_truth), copies it under anonymous names in a seeded random order, and writes
   `index.html` (a static page: play, rate 1-5, download your ratings as CSV) and `key.csv` (which sample is which
   system; keep it away from the listeners).
2. Listeners open `index.html` in a browser and send back their `ratings-<name>.csv`.
3. `score_listening_test(key, ratings)` gives MOS per system with a 95% confidence interval (Student's t over
   all ratings of that system).
"""

from __future__ import annotations

import csv
import html
import json
import random
import shutil
from pathlib import Path

import numpy as np

PAGE = """<!doctype html>
<html lang="es"><head><meta charset="utf-8"><title>Prueba de escucha / Listening test</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:2em auto}} .s{{border-bottom:1px solid #ddd;padding:.6em 0}}
label{{margin-right:.8em}}</style></head><body>
<h1>Prueba de escucha</h1>
<p>Escucha cada muestra y califica su naturalidad de 1 (mala) a 5 (excelente). Listen to each sample and rate its
naturalness from 1 (bad) to 5 (excellent). Al terminar, descarga tus calificaciones y envíalas.</p>
<p><label>Nombre / name: <input id="rater" required></label></p>
{samples}
<p><button onclick="download()">Descargar calificaciones (CSV)</button> <span id="msg"></span></p>
<script>
function download() {{
  const rater = document.getElementById('rater').value.trim();
  if (!rater) {{ document.getElementById('msg').textContent = 'Escribe tu nombre / enter your name'; return; }}
  const rows = [['rater', 'sample', 'score']];
  let missing = 0;
  document.querySelectorAll('.s').forEach(div => {{
    const checked = div.querySelector('input:checked');
    if (checked) rows.push([rater, div.dataset.sample, checked.value]); else missing++;
  }});
  const blob = new Blob([rows.map(r => r.join(',')).join('\\n') + '\\n'], {{type: 'text/csv'}});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'ratings-' + rater.replace(/[^A-Za-z0-9_-]/g, '_') + '.csv';
  a.click();
  document.getElementById('msg').textContent = missing ? missing + ' sin calificar / unrated' : 'OK';
}}
</script></body></html>
"""

SAMPLE = """<div class="s" data-sample="{name}"><b>{number}.</b> {text}<br>
<audio controls preload="none" src="audio/{name}.wav"></audio><br>
{choices}</div>"""


def prepare_listening_test(eval_dir: str | Path, output_dir: str | Path, seed: int = 0) -> Path:
    """Writes a blinded listening test from an evaluation's audio: shuffled samples, a page to rate them, the key.

    Args:
        eval_dir: An evaluation's output folder (`results.json` and `audio/<system>/`).
        output_dir: Where `audio/`, `index.html` and `key.csv` go; give listeners the first two only.
        seed: Seeds the shuffle.

    Returns:
        The path of `index.html`: listeners open it, rate each sample 1-5 and download their ratings as CSV.

    Raises:
        ValueError: The evaluation folder holds no audio.
    """
    eval_dir, output_dir = Path(eval_dir), Path(output_dir)
    results = json.loads((eval_dir / "results.json").read_text(encoding="utf-8"))
    texts = {s["id"]: s["text"] for system in results["systems"].values() for s in system["samples"]}
    entries = [(system_dir.name, wav) for system_dir in sorted((eval_dir / "audio").iterdir()) if system_dir.is_dir()
               for wav in sorted(system_dir.glob("*.wav"))]
    if not entries:
        raise ValueError(f"No audio under {eval_dir / 'audio'}: run training/evaluate.py first.")
    random.Random(seed).shuffle(entries)
    (output_dir / "audio").mkdir(parents=True, exist_ok=True)
    blocks, key_rows = [], [["sample", "system", "id", "text"]]
    for number, (system, wav) in enumerate(entries, start=1):
        name = f"sample_{number:04d}"
        shutil.copyfile(wav, output_dir / "audio" / f"{name}.wav")
        text = texts.get(wav.stem, "")
        key_rows.append([name, system, wav.stem, text])
        choices = " ".join(f'<label><input type="radio" name="{name}" value="{v}">{v}</label>' for v in range(1, 6))
        blocks.append(SAMPLE.format(name=name, number=number, text=html.escape(text), choices=choices))
    with open(output_dir / "key.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(key_rows)
    page = output_dir / "index.html"
    page.write_text(PAGE.format(samples="\n".join(blocks)), encoding="utf-8")
    return page


def score_listening_test(key_csv: str | Path, ratings: list[str | Path]) -> dict[str, dict[str, float]]:
    """MOS per system from the listeners' ratings.

    Args:
        key_csv: The `key.csv` that `prepare_listening_test` wrote.
        ratings: The listeners' downloaded CSV files.

    Returns:
        Per system: `mos` (the mean), `ci95` (the 95% confidence interval's half-width, Student's t), `ratings`
        and `raters` (how many).

    Raises:
        ValueError: A rating names an unknown sample or a score outside 1-5.
    """
    from scipy import stats

    with open(key_csv, encoding="utf-8") as handle:
        system_of = {row["sample"]: row["system"] for row in csv.DictReader(handle)}
    scores: dict[str, list[float]] = {}
    raters: dict[str, set[str]] = {}
    for path in ratings:
        with open(path, encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                score = int(row["score"])
                if row["sample"] not in system_of or not 1 <= score <= 5:
                    raise ValueError(f"{path}: unknown sample {row['sample']!r} or score {score} outside 1-5.")
                system = system_of[row["sample"]]
                scores.setdefault(system, []).append(score)
                raters.setdefault(system, set()).add(row["rater"])
    summary = {}
    for system, values in sorted(scores.items()):
        values_array = np.asarray(values, dtype=float)
        n = len(values_array)
        half = float(stats.t.ppf(0.975, n - 1) * values_array.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        summary[system] = {"mos": float(values_array.mean()), "ci95": half, "ratings": n,
                           "raters": len(raters[system])}
    return summary

