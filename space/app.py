"""Chatterbox ES-LATAM Space: Latin-American Spanish voice cloning in the browser, and a REST API beside it.

    CHATTERBOX_LATAM_MODEL=USER/chatterbox-es-latam python space/app.py    # a Hub repo, or a local folder
    GRADIO_SERVER_PORT=7860 python space/app.py                           # default model: runs/demo/merged

One FastAPI app serves the Gradio page at `/` (its API endpoints named for `gradio_client`: `/generate`,
`/feedback`) and `POST /generate` (multipart: `text`, `reference` file, `exaggeration`, `cfg_weight`,
`temperature`, `seed`, `accent`) answering `audio/wav`, documented at `/docs`. Inputs are capped (text length,
reference size and duration), uploads that are not audio are refused with the reason, one synthesis runs at a
time and at most QUEUE_SIZE requests wait. Feedback (a 1-5 rating and a comment) is stored with the settings of
the result, and the reference voice only when the user agrees, through Gradio's CSV flagging in FEEDBACK_DIR,
synced to the Hub dataset FEEDBACK_DATASET when that is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if os.getenv("SPACE_ID"):  # on Spaces: chatterbox-tts goes in without its pins (see requirements.txt)
    try:
        import chatterbox  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "chatterbox-tts==0.1.7"], check=True)

import gradio as gr  # noqa: E402
from fastapi import FastAPI, File, Form, HTTPException, UploadFile  # noqa: E402
from fastapi.responses import Response  # noqa: E402

from chatterbox_latam.synthesis.config import GenerationSettings  # noqa: E402
from chatterbox_latam.synthesis.serving import (  # noqa: E402
    USER_RANGES,
    Busy,
    InputError,
    SpeechService,
    request_settings,
    settings_record,
)
from chatterbox_latam.utils import wav_bytes

try:  # ZeroGPU on Spaces; a no-op decorator anywhere else
    import spaces

    GPU = spaces.GPU
except ImportError:
    def GPU(function=None, **_):
        return function if function is not None else (lambda f: f)

MODEL = os.getenv("CHATTERBOX_LATAM_MODEL", str(HERE.parent / "runs" / "demo" / "merged"))
FEEDBACK_DIR = Path(os.getenv("FEEDBACK_DIR", HERE / "feedback"))
SERVICE = SpeechService(MODEL)
DEFAULTS = GenerationSettings()

EXAMPLES = [
    "Hola, ¿cómo estás? Bienvenido a Chatterbox en español latinoamericano.",
    "¡Qué padre! Nos vemos el 5 de mayo a las 10:30 en la Ciudad de México.",
    "Che, ¿vamos a tomar unos mates? Son $1.500 pesos la entrada.",
    "El Dr. Pérez llegó con la Sra. Núñez; el 75% de los boletos ya se vendió.",
]


def _settings(exaggeration, cfg_weight, temperature, seed, accent) -> GenerationSettings:
    seed = None if seed in (None, "", -1) else int(seed)
    return request_settings(exaggeration=exaggeration, cfg_weight=cfg_weight, temperature=temperature, seed=seed,
                            accent=accent)


@GPU
def speak(text, reference, accent, exaggeration, cfg_weight, temperature, seed, streaming):
    """Speaks `text` in the voice of the uploaded or recorded `reference`; streams audio while T3 decodes (every
    STREAM_CHUNK_TOKENS speech tokens after the first STREAM_FIRST_CHUNK_TOKENS, or sentence by sentence) when
    `streaming` is on. Yields (full audio, streamed chunk, settings for feedback, status)."""
    try:
        settings = _settings(exaggeration, cfg_weight, temperature, seed, accent)
        voice = SERVICE.load_reference(SERVICE.read_upload(reference, _upload_root()))
        sr = SERVICE.model.sr
        record = settings_record(text, settings, SERVICE.mode)
        if streaming:
            for chunk in SERVICE.stream(text, voice, settings):
                yield gr.skip(), (sr, chunk), record, f"Modo: {SERVICE.mode}"
        else:
            wav = SERVICE.synthesize(text, voice, settings)
            yield (sr, wav), gr.skip(), record, f"Modo: {SERVICE.mode}"
    except InputError as error:
        raise gr.Error(str(error)) from error
    except Busy as error:
        raise gr.Error(f"Servidor ocupado: {error}") from error


def _upload_root() -> str:
    from gradio.utils import get_upload_folder

    return get_upload_folder()


FEEDBACK = gr.CSVLogger()


def feedback(record, rating, comment, share_voice, reference):
    """Stores a rating (1-5) and a comment with the result's settings; the reference voice only if agreed."""
    if not record:
        raise gr.Error("Genera un audio primero.")
    if rating is None:
        raise gr.Error("Elige una calificación de 1 a 5.")
    voice = {"path": reference} if share_voice and reference else None  # the upload Gradio stored, as file data
    FEEDBACK.flag([record, int(rating), comment or "", voice])
    return "¡Gracias por tu opinión!"


def build_demo() -> gr.Blocks:
    accents = SERVICE.accents
    with gr.Blocks(title="Chatterbox ES-LATAM", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Chatterbox ES-LATAM\nClonación de voz en español latinoamericano "
                    f"(modelo `{Path(MODEL).name if Path(MODEL).exists() else MODEL}`). "
                    "Todo audio generado lleva la marca de agua Perth de Resemble AI.")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Texto", lines=4, max_length=SERVICE.limits.max_text_chars,
                                  placeholder="Escribe lo que la voz debe decir")
                reference = gr.Audio(label="Voz de referencia (5-15 s)", sources=["upload", "microphone"],
                                     type="filepath")
                accent = gr.Dropdown(label="Acento", choices=accents, value=accents[0] if accents else None,
                                     visible=bool(accents))
                with gr.Accordion("Opciones avanzadas", open=False):
                    exaggeration = gr.Slider(*USER_RANGES["exaggeration"], value=DEFAULTS.exaggeration, step=0.05,
                                             label="Exageración")
                    cfg_weight = gr.Slider(*USER_RANGES["cfg_weight"], value=DEFAULTS.cfg_weight, step=0.05,
                                           label="CFG")
                    temperature = gr.Slider(*USER_RANGES["temperature"], value=DEFAULTS.temperature, step=0.05,
                                            label="Temperatura")
                    seed = gr.Number(value=0, precision=0, label="Semilla (-1: aleatoria)")
                streaming = gr.Checkbox(label="Streaming (el audio empieza antes de terminar)", value=False)
                button = gr.Button("Generar", variant="primary")
                gr.Examples(EXAMPLES, inputs=[text])
            with gr.Column():
                output = gr.Audio(label="Audio generado", type="numpy", interactive=False)
                streamed = gr.Audio(label="Audio (streaming)", streaming=True, autoplay=True, visible=False,
                                    interactive=False)
                status = gr.Markdown()
                record = gr.JSON(visible=False)
                with gr.Group():
                    rating = gr.Radio([1, 2, 3, 4, 5], label="¿Qué tal suena? (1-5)")
                    comment = gr.Textbox(label="Comentario", lines=2)
                    share_voice = gr.Checkbox(label="Acepto compartir mi voz de referencia con la opinión", value=False)
                    send = gr.Button("Enviar opinión")
                    thanks = gr.Markdown()
        streaming.change(lambda on: (gr.update(visible=not on), gr.update(visible=on)), streaming, [output, streamed],
                         api_name=False)
        button.click(speak, [text, reference, accent, exaggeration, cfg_weight, temperature, seed, streaming],
                     [output, streamed, record, status], api_name="generate")
        send.click(feedback, [record, rating, comment, share_voice, reference], thanks, api_name="feedback")
        FEEDBACK.setup([record, rating, comment, reference], FEEDBACK_DIR)
        if os.getenv("FEEDBACK_DATASET"):
            from huggingface_hub import CommitScheduler

            CommitScheduler(repo_id=os.environ["FEEDBACK_DATASET"], repo_type="dataset", folder_path=FEEDBACK_DIR,
                            every=10, private=True)
    return demo


def build_app() -> FastAPI:
    app = FastAPI(title="Chatterbox ES-LATAM API",
                  description="Latin-American Spanish voice cloning with Chatterbox. Answers 24 kHz WAV.")

    @app.post("/generate", response_class=Response, responses={
        200: {"content": {"audio/wav": {}}, "description": "The speech, 24 kHz 16-bit WAV, watermarked."},
        413: {"description": "Text or reference too large."}, 415: {"description": "Reference is not audio."},
        422: {"description": "Bad input; the detail says what to change."},
        503: {"description": "Busy: QUEUE_SIZE requests are already waiting; retry after Retry-After seconds."}})
    def generate(text: str = Form(..., description="Text to speak."),
                 reference: UploadFile = File(..., description="A few seconds of the voice to clone."),
                 exaggeration: float = Form(DEFAULTS.exaggeration), cfg_weight: float = Form(DEFAULTS.cfg_weight),
                 temperature: float = Form(DEFAULTS.temperature), seed: int | None = Form(None),
                 accent: str | None = Form(None)):
        """Speaks `text` in the voice of `reference`."""
        try:
            settings = request_settings(exaggeration=exaggeration, cfg_weight=cfg_weight, temperature=temperature,
                                        seed=seed, accent=accent)
            SERVICE.check_text(text)
            data = reference.file.read(SERVICE.limits.max_reference_mb * 1_000_000 + 1)
            voice = SERVICE.load_reference(data)
            wav = SERVICE.synthesize(text, voice, settings)
        except InputError as error:
            raise HTTPException(status_code=error.status, detail=str(error)) from error
        except Busy as error:  # "try again in a minute"
            raise HTTPException(status_code=503, detail=str(error), headers={"Retry-After": "60"}) from error
        return Response(wav_bytes(wav, SERVICE.model.sr), media_type="audio/wav")

    demo = build_demo()
    demo.queue(default_concurrency_limit=1, max_size=SERVICE.limits.queue_size)
    return gr.mount_gradio_app(app, demo, path="/", max_file_size=f"{SERVICE.limits.max_reference_mb}mb",
                               allowed_paths=[], show_error=True)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build_app(), host=os.getenv("GRADIO_SERVER_NAME", "127.0.0.1"),
                port=int(os.getenv("GRADIO_SERVER_PORT", "7860")), log_level="warning")
