"""The quickstart notebook in examples/ runs top to bottom (offline, tiny model), so it never rots."""

from __future__ import annotations

import os

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient


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
    wav = tmp_path / "quickstart" / "hola.wav"
    assert wav.exists() and os.path.getsize(wav) > 1000
    assert (tmp_path / "quickstart" / "merged" / "config.json").exists()
