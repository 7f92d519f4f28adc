"""The Space as users meet it: a real headless Chromium on the page, `gradio_client`, `POST /generate` over HTTP,
clear errors for bad input, feedback storage, and 20 concurrent requests all answered.

The app runs as its own process (`python space/app.py`) on the tiny checkpoint, on a free port."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
from conftest import ROOT

from chatterbox_latam.utils import cpu_has_bf16

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def reference(corpus) -> Path:
    return sorted((corpus / "audio").rglob("*.wav"))[0]


@contextlib.contextmanager
def _running_space(checkpoint: Path, folder: Path, **env):
    """`python space/app.py` on `checkpoint`, on a free port, its feedback in `folder`; `env` adds settings."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CHATTERBOX_LATAM_MODEL": str(checkpoint), "GRADIO_SERVER_PORT": str(port),
           "FEEDBACK_DIR": str(folder), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "ALIGNMENT": "off", **env}  # upstream's alignment heuristics switched off (v2's default is on)
    log_path = folder.parent / f"{folder.name}.log"
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, str(ROOT / "space" / "app.py")], env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if requests.get(url + "/", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(1)
        assert process.poll() is None, log_path.read_text()[-3000:]
    else:
        process.kill()
        pytest.fail("the Space did not start: " + log_path.read_text()[-3000:])
    try:
        yield {"url": url, "feedback": folder}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def space(tiny_checkpoint, tmp_path_factory):
    with _running_space(tiny_checkpoint, tmp_path_factory.mktemp("feedback")) as running:
        yield running


def _post(space, reference: Path | bytes, text: str = "Hola.", **form) -> requests.Response:
    data = reference.read_bytes() if isinstance(reference, Path) else reference
    return requests.post(space["url"] + "/generate", data={"text": text, **form},
                         files={"reference": ("ref.wav", data, "audio/wav")}, timeout=600)


@pytest.mark.pipeline
def test_browser_synthesises_with_a_cloned_voice(space, reference, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(space["url"])
        page.get_by_label("Texto").fill("Hola, ¿cómo estás? Nos vemos mañana.")
        page.locator("input[type=file]").first.set_input_files(str(reference))
        page.get_by_test_id("waveform-Voz de referencia (5-15 s)").first.wait_for()
        page.get_by_role("button", name="Generar").click()
        output = page.locator("div.block").filter(
            has=page.get_by_test_id("block-label").filter(has_text="Audio generado")).last
        download = output.get_by_test_id("download-link")
        page.get_by_text("Modo: ").wait_for(timeout=300_000)
        assert output.locator("audio").count() >= 1  # the player's media elements
        wav = page.request.get(download.get_attribute("href")).body()
        samples, rate = sf.read(io.BytesIO(wav))
        assert rate == 24_000 and len(samples) > rate // 2 and np.abs(samples).max() > 0
        output.get_by_role("button", name="Play", exact=True).click()  # it plays: the clock moves
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=\"waveform-Audio generado\"] "
                               "time#time')].some(t => t.textContent !== '0:00')", timeout=30_000)
        assert output.locator("audio").evaluate_all("els => els.some(a => a.duration > 0.5)")  # loaded, not empty
        page.screenshot(path=str(tmp_path / "space.png"), full_page=True)
        browser.close()


def test_gradio_client_generate_and_feedback(space, reference):
    from gradio_client import Client, handle_file

    client = Client(space["url"], verbose=False)
    audio, _, record, status = client.predict("Hola.", handle_file(str(reference)), None, 0.5, 0.5, 0.8, 0, False,
                                              api_name="/generate")
    info = sf.info(audio)
    assert info.samplerate == 24_000 and info.duration > 0.5 and " on cpu" in status  # the mode it chose
    assert "alignment heuristics off" in status
    assert "meanflow S3Gen decoder" in status  # a CPU's default: the decoder the tiny checkpoint ships
    assert ("S3Gen bf16" in status) == cpu_has_bf16()  # and its flow in bf16 where the CPU computes it
    assert record["text"] == "Hola." and record["seed"] == 0
    assert "Gracias" in client.predict(record, 4, "suena bien", False, handle_file(str(reference)),
                                       api_name="/feedback")
    assert "Gracias" in client.predict(record, 2, "robótica", True, handle_file(str(reference)),
                                       api_name="/feedback")
    [log] = space["feedback"].glob("*.csv")
    rows = list(csv.DictReader(log.open(encoding="utf-8")))
    assert [r["¿Qué tal suena? (1-5)"] for r in rows] == ["4", "2"]
    assert '"text": "Hola."' in "".join(rows[0].values()) and '"seed": 0' in "".join(rows[0].values())
    voices = [v for r in rows for k, v in r.items() if "referencia" in k]
    assert voices[0] == "" and voices[1].endswith(".wav")  # the voice is kept only when the user agreed

    # streaming: audio every 50 speech tokens while T3 decodes (the untrained tiny T3 runs to its 65-token budget:
    # two chunks per sentence), played as an HLS stream
    job = client.submit("Hola. Adiós.", handle_file(str(reference)), None, 0.5, 0.5, 0.8, 0, True,
                        api_name="/generate")
    updates = list(job)
    assert len(updates) == 4 and str(updates[-1][1]).endswith(".m3u8")

    with pytest.raises(Exception, match="not usable audio"):
        client.predict("Hola.", handle_file(str(ROOT / "README.md")), None, 0.5, 0.5, 0.8, 0, False,
                       api_name="/generate")


def test_rest_generate_answers_a_wav_and_is_documented(space, reference):
    response = _post(space, reference, "Hola. ¿Qué tal?", exaggeration="0.7", seed="1")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(response.content))
    assert rate == 24_000 and len(samples) > rate
    schema = requests.get(space["url"] + "/openapi.json", timeout=10).json()
    operation = schema["paths"]["/generate"]["post"]
    assert "audio/wav" in operation["responses"]["200"]["content"]
    assert "multipart/form-data" in operation["requestBody"]["content"]


def test_bad_inputs_get_a_4xx_with_the_reason(space, reference):
    cases = [
        (dict(reference=b"this is not audio at all" * 10), 415, "not usable audio"),
        (dict(reference=reference, text="   "), 422, "text is empty"),
        (dict(reference=reference, text="hola " * 200), 413, "limit is 600"),
        (dict(reference=reference, exaggeration="7"), 422, "exaggeration"),
        (dict(reference=reference, accent="xx"), 422, "accent='xx'"),
    ]
    rate = sf.info(str(reference)).samplerate
    long_clip = io.BytesIO()
    sf.write(long_clip, np.tile(sf.read(str(reference))[0], 10)[: 35 * rate], rate, format="WAV")
    cases.append((dict(reference=long_clip.getvalue()), 422, "limit is 30 s"))
    for form, status, reason in cases:
        response = _post(space, **form)
        assert response.status_code == status, (form.keys(), response.text)
        if reason:
            assert reason in response.json()["detail"], response.text


@pytest.mark.slow
def test_twenty_concurrent_requests_are_all_answered(space, reference):
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda i: _post(space, reference, "Hola.", seed=str(i)), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert all(sf.info(io.BytesIO(r.content)).duration > 0.5 for r in responses)


@pytest.mark.slow
def test_a_full_queue_answers_busy_and_frees_up(tiny_checkpoint, reference, tmp_path):
    """QUEUE_SIZE=1 and four requests at once over HTTP: one speaks, one waits its turn and speaks, two are refused
    at once with 503, the reason, and a Retry-After; once the queue has drained, the next request is served."""
    with _running_space(tiny_checkpoint, tmp_path / "feedback", QUEUE_SIZE="1") as space:
        def timed(seed):
            start = time.perf_counter()
            response = _post(space, reference, "Hola. ¿Qué tal? Adiós.", seed=str(seed))
            return response, time.perf_counter() - start

        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(timed, range(4)))
        statuses = sorted(r.status_code for r, _ in answers)
        assert statuses == [200, 200, 503, 503], [(r.status_code, r.text[:200]) for r, _ in answers]
        served = [t for r, t in answers if r.status_code == 200]
        for response, seconds in answers:
            if response.status_code == 503:
                assert "requests are waiting" in response.json()["detail"]
                assert int(response.headers["Retry-After"]) > 0
                assert seconds < min(served)  # refused at once, not after waiting
            else:
                assert sf.info(io.BytesIO(response.content)).duration > 1.0
        after = _post(space, reference, "Hola.", seed="9")
        assert after.status_code == 200 and sf.info(io.BytesIO(after.content)).samplerate == 24_000


def test_user_supplied_paths_are_never_opened(tmp_path):
    from chatterbox_latam.synthesis.serving import InputError, SpeechService, request_settings

    service = SpeechService("not-loaded")  # the checks need no model
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "voice.wav").write_bytes(b"RIFF")
    (tmp_path / "secret.txt").write_text("do not read")
    assert service.read_upload(uploads / "voice.wav", uploads) == b"RIFF"
    for path in (tmp_path / "secret.txt", uploads / ".." / "secret.txt", "/etc/passwd"):
        with pytest.raises(InputError, match="uploaded, not given as a path") as error:
            service.read_upload(path, uploads)
        assert error.value.status == 400
    with pytest.raises(InputError, match="seed"):
        request_settings(seed=-1)
