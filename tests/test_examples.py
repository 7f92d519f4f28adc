"""The quickstart notebook in examples/ runs top to bottom (offline, tiny model), so it never rots."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT
from nbclient import NotebookClient

from chatterbox_latam.models.merge import MERGE_TOLERANCE
from chatterbox_latam.synthesis.tts import ChatterboxLatamTTS


@pytest.mark.pipeline
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path / "quickstart"))
    monkeypatch.setenv("CHATTERBOX_LATAM_ROOT", str(ROOT))
    notebook = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "examples")}}).execute()
    outputs = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                      for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "speech loss" in outputs and "24000" in outputs
    assert not any(o.get("output_type") == "error" for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.outputs)
    # the merge it made checks out, and hola.wav is what that merged model says, sample for sample (16-bit PCM)
    work = tmp_path / "quickstart"
    config = json.loads((work / "merged" / "config.json").read_text())
    assert config["adapted"] == ["t3"]
    assert max(config["merge_check"]["max_relative_difference"].values()) <= MERGE_TOLERANCE
    samples, rate = sf.read(work / "hola.wav", dtype="float32")
    model = ChatterboxLatamTTS.from_pretrained(work / "merged")
    reference = sorted((work / "corpus" / "audio").rglob("*.wav"))[0]
    again = model.generate("¡Hola! Nos vemos el 5 de mayo a las 10:30.", reference, seed=0).squeeze(0).numpy()
    assert rate == 24_000 and len(samples) == len(again) > rate and np.abs(samples - again).max() < 1e-3
