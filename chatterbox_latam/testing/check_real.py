"""Minutes, not GPU hours: does this project read the real weights right? (`make check-real`, network needed.)

    make check-real                      # BASE=v2 (ResembleAI/chatterbox), or v3, es-mx-latam, es-es
    python -m chatterbox_latam.testing.check_real --base es-mx-latam [--data DIR] [--workdir DIR] [--device cuda]

Downloads the base and checks, in order:
1. **Decoding**: upstream's own `ChatterboxMultilingualTTS.generate` and this project's give the same speech tokens
   in fp32 for a seeded Spanish sentence (v2: chatterbox-tts 0.1.7 as installed; v3 and the packs: the same
   upstream loop as upstream main runs it, without the alignment analyzer and with repetition penalty 1.2).
2. **Training input**: the pretrained T3's speech loss on real clips (`--data`, a folder in the seed layout; by
   default sentences the base itself speaks in its default voice) is far below chance (ln 8194 = 9.0): a wrong input
   layout (positions, start tokens, conditioning) shows up as a loss near chance.
3. **The whole path**: five LoRA steps on those clips, a merge, and one sentence spoken by the merged model.

Without the Hub it stops at once, says why, and prints the command to run where the Hub is reachable. The same
checks run on the tiny model in the test suite; on the real weights they are the tests marked `real_weights`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..utils import default_device, write_wav

BASES = {
    "v2": ("ResembleAI/chatterbox", "v2"),
    "v3": ("ResembleAI/chatterbox", "v3"),
    "es-mx-latam": ("ResembleAI/Chatterbox-Multilingual-es-mx-latam", None),
    "es-es": ("ResembleAI/Chatterbox-Multilingual-es-es", None),
}
CHECK_TEXT = "Hola, ¿cómo estás? Hoy vamos a probar la voz en español."
CLIP_TEXTS = [
    "Buenos días, ¿cómo amaneció usted hoy?",
    "La reunión empieza a las diez de la mañana.",
    "Mi hermana vive en Guadalajara desde hace años.",
    "¿Me puedes pasar la sal, por favor?",
    "El tren llegó tarde otra vez esta semana.",
    "Vamos a comer tacos al pastor en la esquina.",
    "Hace mucho calor y el cielo está despejado.",
    "Gracias por venir, nos vemos el próximo lunes.",
]
SPEECH_VOCAB = 8194  # T3Config.speech_tokens_dict_size
CHANCE = math.log(SPEECH_VOCAB)
LOSS_CEILING = 0.6 * CHANCE
"""A pretrained T3 on speech it can read scores far below chance; a wrong input layout stays near chance."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    figures: dict[str, Any]


def hub_unreachable(timeout: float = 10.0, environ: dict[str, str] | None = None) -> str | None:
    """Why the Hub cannot be used from here (with `environ`'s settings, default this process's), or None when it
    answers: the Hub client's own request for `ResembleAI/chatterbox`'s metadata."""
    from huggingface_hub import HfApi

    environ = os.environ if environ is None else environ
    if environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return "HF_HUB_OFFLINE is set"
    endpoint = environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        HfApi(endpoint=endpoint, token=environ.get("HF_TOKEN") or False).model_info(BASES["v2"][0], timeout=timeout)
    except Exception as error:  # noqa: BLE001 - any failure to get an answer is the reason to report
        return f"{endpoint} cannot be reached or does not serve {BASES['v2'][0]} ({type(error).__name__})"
    return None


@contextlib.contextmanager
def _without_alignment_analyzer(t3):
    """0.1.7's `T3.inference` builds its alignment analyzer for every multilingual T3 (`hp.is_multilingual`: a
    2454-token text vocabulary). Upstream main removed the analyzer and changed nothing else in the loop's draws,
    so 0.1.7's loop with a config that does not ask for the analyzer is main's loop."""
    hp = t3.hp
    t3.hp = copy.copy(hp)
    t3.hp.text_tokens_dict_size = -1
    try:
        yield
    finally:
        t3.hp = hp


def upstream_main_inference(t3, t3_cond, text_tokens: torch.Tensor, max_new_tokens: int = 1000,
                            **sampling) -> torch.Tensor:
    """Upstream's `T3.inference` as upstream main runs it for v3 and the packs (no alignment analyzer)."""
    text = torch.atleast_2d(text_tokens)
    with _without_alignment_analyzer(t3):
        return t3.inference(t3_cond=t3_cond, text_tokens=torch.cat([text, text]), max_new_tokens=max_new_tokens,
                            **{"temperature": 0.8, "cfg_weight": 0.5, "min_p": 0.05, "top_p": 1.0, **sampling})


def check_decoding(model, text: str = CHECK_TEXT, seed: int = 0, reference=None) -> CheckResult:
    """Upstream's own `generate` (its T3 tokens, caught on their way to S3Gen) against `model.tokens`, fp32, same
    seed, same voice (the default one, or `reference`)."""
    tts = model.tts
    generation = model.generation
    caught: list[torch.Tensor] = []
    inference = tts.t3.inference

    class Caught(Exception):
        """Upstream's tokens are in hand: its S3Gen and watermark have nothing to add to this check."""

    def catch(*args, **kwargs):  # upstream's own call, its result kept
        caught.append(inference(*args, **kwargs))
        raise Caught

    tts.t3.inference = catch
    default_voice = tts.conds  # upstream's generate keeps a given reference as the model's voice
    try:
        with torch.random.fork_rng(devices=[]), (
                _without_alignment_analyzer(tts.t3) if not generation.alignment else contextlib.nullcontext()):
            torch.manual_seed(seed)
            tts.generate(text, language_id="es", audio_prompt_path=None if reference is None else str(reference),
                         repetition_penalty=generation.repetition_penalty)
    except Caught:
        pass
    finally:
        del tts.t3.inference
        tts.conds = default_voice
    upstream = caught[0][:1]
    ours = model.tokens(text, reference, seed=seed, max_new_tokens=1000, alignment=generation.alignment)
    same = torch.equal(upstream.cpu(), ours.cpu())
    figures = {"upstream_tokens": int(upstream.shape[1]), "our_tokens": int(ours.shape[1]),
               "generation": generation.name}
    if not same:
        n = min(upstream.shape[1], ours.shape[1])
        differ = (upstream[0, :n].cpu() != ours[0, :n].cpu()).nonzero()
        figures["first_difference"] = int(differ[0]) if len(differ) else n
    return CheckResult("decoding", same, f"same speech tokens as upstream's generate ({generation.name} decoding)"
                       if same else f"speech tokens differ from upstream's generate: {figures}", figures)


@torch.no_grad()
def speech_loss(t3, dataset_split, batch_size: int = 4) -> float:
    """T3's mean next-token speech loss on prepared rows, through the training module (what step 0 of training
    computes, dropout off)."""
    from ..data.collator import ChatterboxCollator, usable_rows
    from ..training.model import ChatterboxForTraining

    hp = t3.hp
    collator = ChatterboxCollator(hp.start_text_token, hp.stop_text_token, hp.start_speech_token, hp.stop_speech_token)
    module = ChatterboxForTraining(t3, None)
    was_training = t3.training
    t3.eval()
    rows = list(usable_rows(dataset_split))
    total, count = 0.0, 0
    try:
        for start in range(0, len(rows), batch_size):
            batch = collator(rows[start: start + batch_size])
            batch.pop("ids", None)
            batch = {k: v.to(t3.device) for k, v in batch.items()}
            _, loss, n = module.t3_losses(batch["text_tokens"], batch["text_token_lens"], batch["speech_tokens"],
                                          batch["speech_token_lens"], batch["speech_loss_lens"],
                                          prompt_speech_tokens=batch["prompt_speech_tokens"],
                                          prompt_speech_lens=batch["prompt_speech_lens"],
                                          speaker_emb=batch["speaker_emb"], emotion_adv=batch["emotion_adv"])
            total, count = total + float(loss) * n, count + n
    finally:
        t3.train(was_training)
    return total / max(count, 1)


def check_loss(t3, dataset_split) -> CheckResult:
    loss = speech_loss(t3, dataset_split)
    passed = loss < LOSS_CEILING
    detail = (f"pretrained speech loss {loss:.2f} (chance {CHANCE:.2f}; must be below {LOSS_CEILING:.2f})"
              + ("" if passed else ": near chance, the input layout does not match what this T3 was trained on"))
    return CheckResult("training input", passed, detail, {"speech_loss": round(loss, 4), "chance": round(CHANCE, 4)})


def speak_clips(model, folder: Path, texts: list[str] = CLIP_TEXTS, seed: int = 0) -> Path:
    """Clips of the base speaking `texts` in its default voice, written in the seed layout (one speaker)."""
    import csv

    audio = folder / "audio" / "base_voice"
    audio.mkdir(parents=True, exist_ok=True)
    rows = [("audio_path", "transcript", "speaker_id")]
    for i, text in enumerate(texts):
        wav = model.generate(text, seed=seed + i)
        path = audio / f"clip_{i:03d}.wav"
        write_wav(path, wav.squeeze(0).numpy(), model.sr)
        rows.append((path.relative_to(folder).as_posix(), text, "base_voice"))
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return folder


def run_checks(base: str, t3_model: str | None, workdir: Path, data: str | None = None, device: str = "cpu",
               steps: int = 5) -> list[CheckResult]:
    """All three checks (see the module docstring); returns each result, stopping at the first failure of 1 or 2."""
    from ..config import (
        DataConfig,
        LoggingConfig,
        ModelConfig,
        OutputConfig,
        Recipe,
        TrainingConfig,
    )
    from ..data.dataset import load_prepared, tokenize_dataset
    from ..data.prepare import prepare_dataset
    from ..models.merge import merge_adapter
    from ..synthesis.tts import ChatterboxLatamTTS
    from ..training.run import run_finetune

    model = ChatterboxLatamTTS.from_pretrained(base, device=device, t3_model=t3_model)
    results = [check_decoding(model)]
    if not results[-1].passed:
        return results
    clips = Path(data) if data else speak_clips(model, workdir / "clips")
    model_config = ModelConfig(base_model=base, t3_model=t3_model, lora_rank=8, lora_alpha=16)
    data_config = DataConfig(input_path=str(clips), prepared_dir=str(workdir / "data"), validation_size=0.0,
                             test_size=0.0, device=device, max_rows=32)
    prepare_dataset(model_config, data_config, progress=False)
    train = tokenize_dataset(load_prepared(workdir / "data"), model.tts.tokenizer, "es")["train"]
    results.append(check_loss(model.tts.t3, train))
    del model
    if not results[-1].passed:
        return results
    recipe = Recipe(model_config,
                    TrainingConfig(batch_size=2, gradient_accumulation_steps=1, learning_rate=1e-4, max_steps=steps,
                                   warmup_steps=0, bf16=device != "cpu"),
                    data_config,
                    OutputConfig(checkpoint_dir=str(workdir / "checkpoints"), save_every=steps),
                    LoggingConfig(report_to=["none"], log_every=1, eval_audio_samples=0))
    [trained] = run_finetune(recipe)
    merged = merge_adapter(trained.adapter_dir, workdir / "merged")
    speaker = ChatterboxLatamTTS.from_pretrained(merged.output_dir, device=device)
    wav = speaker.generate(CHECK_TEXT, seed=0)
    seconds = wav.shape[1] / speaker.sr
    spoke = bool(torch.isfinite(wav).all()) and seconds > 0.5
    results.append(CheckResult(
        "training, merge, synthesis", spoke,
        f"{steps} LoRA steps (speech loss {trained.first_speech_loss:.3f} -> {trained.last_speech_loss:.3f}), merged "
        f"(max relative difference {max(merged.check.values()):.1e}), spoke {seconds:.1f} s",
        {"first_speech_loss": trained.first_speech_loss, "last_speech_loss": trained.last_speech_loss,
         "merge_difference": max(merged.check.values()), "seconds": round(seconds, 2)}))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="v2", choices=sorted(BASES), help="Which published base to check.")
    parser.add_argument("--data", default=None, help="A folder in the seed layout with real Spanish clips (default: "
                                                     "sentences the base speaks itself).")
    parser.add_argument("--workdir", default=None, help="Where clips, data, adapters and the merge go (default: "
                                                        "a temporary folder).")
    parser.add_argument("--device", default=default_device())
    args = parser.parse_args(argv)
    reason = hub_unreachable()
    if reason:
        print(f"check-real needs the Hugging Face Hub to download {BASES[args.base][0]}, and {reason}.\n"
              f"Run it where the Hub is reachable (no HF_HUB_OFFLINE):\n"
              f"    make check-real BASE={args.base}\n"
              f"or: python -m chatterbox_latam.testing.check_real --base {args.base}", file=sys.stderr)
        return 2
    repo, t3_model = BASES[args.base]
    with tempfile.TemporaryDirectory(prefix="check-real-") as tmp:
        workdir = Path(args.workdir or tmp)
        results = run_checks(repo, t3_model, workdir, args.data, args.device)
    for result in results:
        print(f"[{'pass' if result.passed else 'FAIL'}] {result.name}: {result.detail}")
    print(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.passed for r in results) and len(results) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())

