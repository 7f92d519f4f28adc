"""The Runpod workflow: train on a volume, sync the newest checkpoint to the Hub, lose the volume, resume from the
Hub copy (training/runpod/train.sh end to end, against the local Hub)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

from chatterbox_latam.training.checkpoints import (
    COMPLETE_MARKER,
    pull_latest_checkpoint,
    push_latest_checkpoint,
)


def _train(volume: Path, prepared, checkpoint, max_steps: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "VOLUME": str(volume), "HUB_CHECKPOINTS": "latam/runpod-run", "SYNC_EVERY": "2",
           "ACCELERATE_CONFIG": str(ROOT / "accelerate_configs" / "cpu.yaml")}
    return subprocess.run(
        ["bash", str(ROOT / "training" / "runpod" / "train.sh"), str(ROOT / "training" / "recipes" / "tiny_cpu.yaml"),
         "--base_model", str(checkpoint), "--prepared_dir", str(Path(prepared[0].dataset_dir).parent),
         "--max_steps", str(max_steps), "--save_every", "1", "--train_s3gen", "false", "--eval_audio_samples", "0",
         "--report_to", "none"],
        capture_output=True, text=True, timeout=900, env=env, cwd=ROOT,
    )


@pytest.mark.pipeline
def test_pod_restart_resumes_from_the_hub_copy(prepared, tiny_checkpoint, tmp_path, hub):
    first = _train(tmp_path / "volume-1", prepared, tiny_checkpoint, max_steps=2)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    files = hub.files("latam/runpod-run")
    assert f"last-checkpoint/{COMPLETE_MARKER}" in files
    assert json.loads(files[f"last-checkpoint/{COMPLETE_MARKER}"])["global_step"] == 2
    assert "last-checkpoint/t3/adapter_model.safetensors" in files

    # a new pod with an empty volume: pulls checkpoint-2 from the Hub and trains on to step 3
    second = _train(tmp_path / "volume-2", prepared, tiny_checkpoint, max_steps=3)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "restored" in second.stdout
    state = json.loads((tmp_path / "volume-2" / "checkpoints" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert json.loads(hub.files("latam/runpod-run")[f"last-checkpoint/{COMPLETE_MARKER}"])["global_step"] == 3


def test_sync_sends_only_new_complete_checkpoints(tmp_path, hub):
    run = tmp_path / "run"
    (run / "checkpoint-5" / "t3").mkdir(parents=True)
    (run / "checkpoint-5" / "t3" / "adapter_model.safetensors").write_bytes(b"weights")
    assert push_latest_checkpoint(run, "latam/sync-unit") is None  # no marker yet: incomplete, nothing sent
    (run / "checkpoint-5" / COMPLETE_MARKER).write_text(json.dumps({"global_step": 5}))
    assert push_latest_checkpoint(run, "latam/sync-unit") == "checkpoint-5"
    assert push_latest_checkpoint(run, "latam/sync-unit") is None  # already there
    restored = pull_latest_checkpoint("latam/sync-unit", tmp_path / "fresh")
    assert restored == tmp_path / "fresh" / "checkpoint-5"
    assert (restored / "t3" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert pull_latest_checkpoint("latam/sync-unit", tmp_path / "fresh") is None  # already has one
    assert pull_latest_checkpoint("latam/never-created", tmp_path / "other") is None
