"""Every ingestion format, with small fixtures made here: folder layout, OpenSLR, Common Voice, Hugging Face datasets
(Hub repo id through the local Hub, streaming, a local save_to_disk folder), and the up-front column checks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, make_configs, run_command

from chatterbox_latam.data.config import DataConfig
from chatterbox_latam.data.dataset import load_prepared
from chatterbox_latam.data.prepare import prepare_dataset
from chatterbox_latam.data.sources import (
    SourceError,
    common_voice_accent,
    detect_format,
    iter_rows,
)

TEXTS = ["Hola, ¿cómo estás?", "Buenos días, señor Núñez.", "El tren sale a las 8:15.", "¡Qué bueno verte!"]


def _wav(corpus: Path, speaker: str, n: int) -> Path:
    return corpus / "audio" / speaker / f"audio_{n:03d}.wav"


@pytest.fixture(scope="module")
def openslr(corpus, tmp_path_factory) -> Path:
    """Two OpenSLR-style sets (es_ar female, es_cl male): line_index.tsv beside a folder of wavs."""
    root = tmp_path_factory.mktemp("openslr")
    for folder, prefix, speaker in (("es_ar_female", "arf", "speaker_003"), ("es_cl_male", "clm", "speaker_004")):
        (root / folder).mkdir()
        lines = []
        for n in (1, 2):
            file_id = f"{prefix}_00123_0{n}98765432"
            shutil.copy(_wav(corpus, speaker, n), root / folder / f"{file_id}.wav")
            lines.append(f"{file_id}\t{TEXTS[n]}")
        (root / folder / "line_index.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def common_voice(corpus, tmp_path_factory) -> Path:
    """A Common Voice-style release: validated.tsv and mp3 clips, accents in free text."""
    root = tmp_path_factory.mktemp("cv")
    (root / "clips").mkdir()
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    rows = [header]
    for i, (speaker, accents) in enumerate([("speaker_001", "México"), ("speaker_001", "México"),
                                            ("speaker_005", "Chileno"), ("speaker_005", "Chileno")]):
        name = f"common_voice_es_{i}.mp3"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(_wav(corpus, speaker, i + 1)),
                        str(root / "clips" / name)], check=True)
        client = f"{speaker}-0123456789abcdef"
        rows.append(f"{client}\t{name}\ts{i}\t{TEXTS[i]}\t\t2\t0\tthirties\tfemale\t{accents}\t\tes\t")
    (root / "validated.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def _hub_dataset(corpus: Path):
    import datasets

    files = [_wav(corpus, "speaker_002", 1), _wav(corpus, "speaker_002", 2), _wav(corpus, "speaker_006", 1),
             _wav(corpus, "speaker_006", 2)]
    return datasets.Dataset.from_dict(
        {"clip": [str(f) for f in files], "sentence": TEXTS, "spk": ["m1", "m1", "p1", "p1"],
         "region": ["es-MX", "es-MX", "Perú", "Perú"]}
    ).cast_column("clip", datasets.Audio())


def test_format_detection(corpus, openslr, common_voice, tmp_path):
    assert detect_format(str(corpus)) == "folder"
    assert detect_format(str(openslr)) == "openslr"
    assert detect_format(str(common_voice)) == "commonvoice"
    assert detect_format("someone/some-dataset") == "hub"


def test_openslr_rows_take_accent_from_the_set_and_speaker_from_the_file_id(openslr):
    rows = list(iter_rows(DataConfig(input_path=str(openslr))))
    assert len(rows) == 4 and all(Path(r.audio).exists() for r in rows)
    assert sorted((r.speaker_id, r.accent) for r in rows) == [("arf_00123", "ar")] * 2 + [("clm_00123", "cl")] * 2
    assert {r.extra["gender"] for r in rows} == {"female", "male"}


def test_openslr_prepares_and_pushes_with_a_card(openslr, tiny_checkpoint, tmp_path, hub):
    """The whole command, as users run it, including --push_to_hub to the (local) Hub."""
    import datasets

    result = run_command("prepare", "--config", ROOT / "training" / "recipes" / "tiny_cpu.yaml", "--base_model",
                         tiny_checkpoint, "--input", openslr, "--format", "openslr", "--output_dir", tmp_path / "out",
                         "--train_s3gen", "false", "--push_to_hub", "latam/openslr-prepared")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| kept | 4 |" in result.stdout and "| ar |" in result.stdout
    readme = hub.files("latam/openslr-prepared", "dataset")["README.md"].decode()
    assert "license: cc-by-sa-4.0" in readme and "- text-to-speech" in readme and "language:\n- es" in readme
    assert "accent-ar" in readme and "accent-cl" in readme and "configs:" in readme
    loaded = datasets.load_dataset("latam/openslr-prepared")
    assert sum(len(s) for s in loaded.values()) == 4
    assert set(loaded["train"].column_names) >= {"audio", "text", "speech_tokens", "prompt_speech_tokens"}
    streamed = next(iter(datasets.load_dataset("latam/openslr-prepared", split="train", streaming=True)))
    assert streamed["accent"] in {"ar", "cl"} and len(streamed["speaker_emb"]) == 256


def test_common_voice_maps_accents_and_decodes_mp3(common_voice, tiny_checkpoint, tmp_path):
    rows = list(iter_rows(DataConfig(input_path=str(common_voice))))
    assert [r.accent for r in rows] == ["mx", "mx", "cl", "cl"]
    model, data = make_configs(tiny_checkpoint, common_voice, tmp_path / "out", validation_size=0.0, test_size=0.0)
    result = prepare_dataset(model, data, progress=False)
    assert result.summary["kept"] == 4, result.summary
    assert set(result.summary["hours_per_accent"]) == {"mx", "cl"}
    assert common_voice_accent("Español de Argentina, rioplatense") == "ar"
    assert common_voice_accent("", "es-CO") == "co"


def test_hub_dataset_by_repo_id_with_column_mapping(corpus, tiny_checkpoint, tmp_path, hub):
    _hub_dataset(corpus).push_to_hub("latam/raw-speech")
    model, data = make_configs(
        tiny_checkpoint, "latam/raw-speech", tmp_path / "out", audio_column="clip", text_column="sentence",
        speaker_column="spk", accent_column="region", validation_size=0.0, test_size=0.0,
    )
    result = prepare_dataset(model, data, progress=False)
    assert result.summary["kept"] == 4
    assert result.summary["hours_per_accent"].keys() == {"mx", "pe"}
    train = load_prepared(tmp_path / "out")["train"]
    assert sorted(train["raw_text"]) == sorted(TEXTS)
    assert "El tren sale a las ocho y quince." in train["text"]
    assert "region" not in train.column_names  # mapped to accent, not copied as an extra column


def test_hub_dataset_streaming(corpus, tiny_checkpoint, tmp_path, hub):
    _hub_dataset(corpus).push_to_hub("latam/raw-speech-stream")
    model, data = make_configs(
        tiny_checkpoint, "latam/raw-speech-stream", tmp_path / "out", audio_column="clip", text_column="sentence",
        speaker_column="spk", streaming=True, max_rows=3, validation_size=0.0, test_size=0.0,
    )
    result = prepare_dataset(model, data, progress=False)
    assert result.summary["clips_in"] == 3 and result.summary["kept"] == 3


def test_local_saved_dataset(corpus, tiny_checkpoint, tmp_path):
    _hub_dataset(corpus).save_to_disk(str(tmp_path / "saved"))
    model, data = make_configs(tiny_checkpoint, tmp_path / "saved", tmp_path / "out", audio_column="clip",
                               speaker_column="spk", validation_size=0.0, test_size=0.0)
    assert prepare_dataset(model, data, progress=False).summary["kept"] == 4  # text column found: "sentence"


def test_wrong_columns_are_named_with_the_real_ones(corpus, tmp_path, hub):
    _hub_dataset(corpus).push_to_hub("latam/raw-speech-columns")
    with pytest.raises(SourceError) as error:
        next(iter_rows(DataConfig(input_path="latam/raw-speech-columns", audio_column="audio")))
    message = str(error.value)
    assert "audio ('audio')" in message and "'clip'" in message and "'sentence'" in message
    assert "--audio_column" in message

    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "metadata.csv").write_text("file,text,who\na.wav,Hola,x\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"audio_path.*Its columns are: \['file', 'text', 'who'\]"):
        next(iter_rows(DataConfig(input_path=str(tmp_path / "seed"))))


def test_seed_layout_reads_transcripts_folder_and_keeps_extra_columns(corpus, tiny_checkpoint, tmp_path):
    root = tmp_path / "seed"
    (root / "audio" / "speaker_001").mkdir(parents=True)
    (root / "transcripts").mkdir()
    for n in (1, 2):
        shutil.copy(_wav(corpus, "speaker_001", n), root / "audio" / "speaker_001" / f"audio_00{n}.wav")
        (root / "transcripts" / f"audio_00{n}.txt").write_text(TEXTS[n], encoding="utf-8")
    (root / "metadata.csv").write_text(
        "audio_path,speaker_id,duration,emotion\n"
        "audio/speaker_001/audio_001.wav,speaker_001,2.5,neutral\naudio/speaker_001/audio_002.wav,speaker_001,3.1,happy\n",
        encoding="utf-8",
    )
    model, data = make_configs(tiny_checkpoint, root, tmp_path / "out", default_accent="co", validation_size=0.0,
                               test_size=0.0)
    prepare_dataset(model, data, progress=False)
    train = load_prepared(tmp_path / "out")["train"]
    assert sorted(train["raw_text"]) == sorted(TEXTS[1:3])
    assert sorted(train["emotion"]) == ["happy", "neutral"] and set(train["accent"]) == {"co"}
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["format"] == "folder"
