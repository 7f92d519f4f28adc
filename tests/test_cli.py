"""The `chatterbox-latam` command: every stage a subcommand, each `--help` listing its fields with their help texts,
bad commands named, and `train` handing several processes over to `accelerate launch`. The stages themselves run
through these same functions in their own tests (and `chatterbox-latam demo` in `make demo`)."""

import shutil
import subprocess
import sys

import pytest

from chatterbox_latam.cli import COMMANDS, main

# One field of each command and a phrase of its help text: the help comes from the config dataclasses.
FIELDS = {
    "segment": ("--script", "read script"),
    "prepare": ("--validation_path", "form the validation split"),
    "train": ("--optim", "optimizer"),
    "evaluate": ("--max_new_tokens", "speech tokens"),
    "merge": ("--gguf", "llama.cpp"),
    "push": ("--repo_id", "Hub repo"),
    "generate": ("--cfg_weight", "guidance"),
    "mos-kit": (None, "prepare"),
    "sync": (None, "push"),
    "check-real": ("--base", "published base"),
    "demo": ("--accelerate_config", "accelerate launch"),
}


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert set(COMMANDS) == set(FIELDS)
    for name in COMMANDS:
        assert f"\n  {name} " in shown


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_each_subcommand_answers_help_with_its_fields(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    flag, phrase = FIELDS[name]
    assert (flag is None or flag in shown) and phrase in shown, shown[:400]
    assert f"chatterbox-latam {name}" in shown  # the usage names the command as typed


def test_unknown_command_and_missing_arguments_say_what_to_do(capsys):
    with pytest.raises(SystemExit, match=r"'trian' is no command. Did you mean 'train'\?"):
        main(["trian"])
    with pytest.raises(SystemExit) as done:
        main(["merge"])  # --adapter and --output_dir are required
    assert done.value.code == 2 and "--adapter" in capsys.readouterr().err
    with pytest.raises(SystemExit, match=r"--num_processes 0: give 1 or more"):
        main(["train", "--num_processes", "0"])


def test_the_console_script_is_installed_and_train_hands_over_to_accelerate():
    """The entry point a `pip install` creates, and the handover: `--num_processes` prints the accelerate launch
    command and runs it, which runs this command again in each process (here with --help, so nothing trains)."""
    script = shutil.which("chatterbox-latam", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script, "the chatterbox-latam console script is not installed (pip install -e .)"
    listed = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    assert "check-real" in listed
    handed = subprocess.run([script, "train", "--num_processes", "1", "--help"], capture_output=True, text=True)
    assert handed.returncode == 0, handed.stderr[-2000:]
    assert "launching:" in handed.stdout and "accelerate.commands.launch" in handed.stdout
    assert "--num_processes 1 -m chatterbox_latam.cli.train --help" in handed.stdout
    assert "--per_device_train_batch_size" in handed.stdout  # the launched process printed train's help


SCRIPTS = {"segment_recordings.py": "segment", "prepare_data.py": "prepare", "run.py": "train",
           "evaluate.py": "evaluate", "merge.py": "merge", "push_to_hub.py": "push", "generate.py": "generate",
           "mos_kit.py": "mos-kit", "sync_checkpoints.py": "sync"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_training_script_is_its_command(script, monkeypatch, capsys):
    """`python training/SCRIPT --help` (the seed's way, and `accelerate launch training/run.py`) runs the command's
    own parser: the same fields as `chatterbox-latam COMMAND --help`."""
    import runpy

    from conftest import ROOT

    path = ROOT / "training" / script
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(path), run_name="__main__")
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    flag, phrase = FIELDS[SCRIPTS[script]]
    assert (flag is None or flag in shown) and phrase in shown, shown[:400]


def test_every_training_script_is_checked():
    from conftest import ROOT

    assert set(SCRIPTS) == {p.name for p in (ROOT / "training").glob("*.py")}
