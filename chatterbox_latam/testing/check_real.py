"""Minutes, not GPU hours: does this project read the real weights right? (`make check-real`, network needed.)

    make check-real                      # BASE=v2 (ResembleAI/chatterbox), or v3, es-mx-latam, es-es
    python -m chatterbox_latam.testing.check_real --base es-mx-latam [--data DIR] [--workdir DIR] [--device cuda]

Downloads the base and checks, in order:
1. **Decoding**: upstream's own `ChatterboxMultilingualTTS.generate` and this project's give the same speech tokens
   in fp32 for a seeded Spanish sentence (v2: chatterbox-tts 0.1.7 as installed; v3 and the packs: the same
   upstream loop as upstream main runs it, without the alignment analyzer and with repetition penalty 1.2). On a GPU,
   where eager and SDPA attention round differently, the same tokens or a teacher-forced agreement of 99%.
2. **Training input**: the pretrained T3's speech loss on real clips (`--data`, a folder in the folder layout; by
   default sentences the base itself speaks in its default voice and in a second voice) is far below chance
   (ln 8194 = 9.0).
3. **Training layout**: the training module's log-probability of every target token equals inference's
   teacher-forced path within 1e-3 (conditional and CFG-unconditional rows), and that layout beats each wrong one
   (one start token, positions one higher, a 2 s prompt, text kept on the unconditional row) by 1e-4 nats per token:
   the loss check alone passes each of those, as each moves the loss by well under a nat.
4. **S3Gen conditioning**: on one training batch, the flow loss with each row's own x-vector is lower than with
   another speaker's.
5. **The whole path**: five LoRA steps on those clips (T3 and S3Gen), a merge, and one sentence spoken by the
   merged model.

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

from ..compat import attention_implementation
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
CHECKS = 5  # decoding, training input, training layout, S3Gen conditioning, and the whole path
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
    skipped: bool = False
    """Not run on this data (the detail says why); it fails nothing."""


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


class _EagerT3:
    """T3 as upstream's decoding runs it: `output_attentions` makes every attention layer eager. Everything but the
    backbone's call is the T3 itself."""

    def __init__(self, t3):
        self._t3 = t3

    def __getattr__(self, name):
        return getattr(self._t3, name)

    def tfmr(self, **kwargs):
        with attention_implementation(self._t3.tfmr.config, "eager"):
            return self._t3.tfmr(**kwargs)


MIN_AGREEMENT = 0.99
"""Where kernels differ (a GPU: upstream's eager attention against this project's SDPA), the share of upstream's
decoding steps whose most likely next token the project's path picks too, both fed upstream's tokens."""


def check_decoding(model, text: str = CHECK_TEXT, seed: int = 0, reference=None, exact: bool | None = None,
                   max_new_tokens: int = 1000) -> CheckResult:
    """Upstream's own `generate` (its T3 tokens, caught on their way to S3Gen) against `model.tokens`, fp32, same
    seed, same voice (the default one, or `reference`). `exact` (default: on the CPU) asks for the same tokens; on a
    GPU, where upstream's eager attention and the project's SDPA round differently and a near-tie can send the two
    samplers apart, it asks for the same tokens or a teacher-forced agreement of at least `MIN_AGREEMENT` on
    upstream's tokens (what can be compared there). `max_new_tokens`: the budget of both (upstream's 1000)."""
    tts = model.tts
    generation = model.generation
    caught: list[torch.Tensor] = []
    inference = tts.t3.inference

    class Caught(Exception):
        """Upstream's tokens are in hand: its S3Gen and watermark have nothing to add to this check."""

    def catch(*args, **kwargs):  # upstream's own call, its result kept
        caught.append(inference(*args, **{**kwargs, "max_new_tokens": max_new_tokens}))
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
    ours = model.tokens(text, reference, seed=seed, max_new_tokens=max_new_tokens, alignment=generation.alignment)
    same = torch.equal(upstream.cpu(), ours.cpu())
    figures = {"upstream_tokens": int(upstream.shape[1]), "our_tokens": int(ours.shape[1]),
               "generation": generation.name}
    if same:
        return CheckResult("decoding", True, f"same speech tokens as upstream's generate ({generation.name} "
                                             "decoding)", figures)
    n = min(upstream.shape[1], ours.shape[1])
    differ = (upstream[0, :n].cpu() != ours[0, :n].cpu()).nonzero()
    figures["first_difference"] = int(differ[0]) if len(differ) else n
    if exact if exact is not None else torch.device(model.device).type == "cpu":
        return CheckResult("decoding", False, f"speech tokens differ from upstream's generate: {figures}", figures)
    from ..synthesis.precision import teacher_forced_agreement

    t3 = model._t3(None)
    agreement = teacher_forced_agreement(_EagerT3(tts.t3), t3, model.voice(reference).t3,
                                         model._text_tokens(text, None, t3), upstream)
    figures["teacher_forced_agreement"] = round(agreement, 4)
    passed = agreement >= MIN_AGREEMENT
    return CheckResult("decoding", passed, f"{'the same next token as' if passed else 'next tokens differ from'} "
                       f"upstream's decoding at {agreement:.1%} of its steps, teacher forced (at least "
                       f"{MIN_AGREEMENT:.0%}; the sampled tokens part at step {figures['first_difference']}: eager "
                       "and SDPA attention round differently here)", figures)


def _collated(t3, rows, with_s3gen: bool = False) -> dict[str, Any]:
    """The training collator's batch of prepared rows (their prepared prompts), on T3's device."""
    from ..data.collator import ChatterboxCollator

    hp = t3.hp
    collator = ChatterboxCollator(hp.start_text_token, hp.stop_text_token, hp.start_speech_token,
                                  hp.stop_speech_token, with_s3gen=with_s3gen)
    batch = collator(rows)
    batch.pop("ids", None)
    return {k: v.to(t3.device) for k, v in batch.items()}


def _training_args(batch: dict[str, Any]) -> dict[str, Any]:
    keys = ("text_tokens", "text_token_lens", "speech_tokens", "speech_token_lens", "speech_loss_lens",
            "prompt_speech_tokens", "prompt_speech_lens", "speaker_emb", "emotion_adv")
    return {k: batch[k] for k in keys}


@contextlib.contextmanager
def _eval_mode(module):
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@torch.no_grad()
def speech_loss(t3, dataset_split, batch_size: int = 4) -> float:
    """T3's mean next-token speech loss on prepared rows, through the training module (what step 0 of training
    computes, dropout off)."""
    from ..data.collator import usable_rows
    from ..training.model import ChatterboxForTraining

    module = ChatterboxForTraining(t3, None)
    rows = list(usable_rows(dataset_split))
    total, count = 0.0, 0
    with _eval_mode(t3):
        for start in range(0, len(rows), batch_size):
            _, loss, n = module.t3_losses(**_training_args(_collated(t3, rows[start: start + batch_size])))
            total, count = total + float(loss) * n, count + n
    return total / max(count, 1)


def check_loss(t3, dataset_split) -> CheckResult:
    loss = speech_loss(t3, dataset_split)
    passed = loss < LOSS_CEILING
    detail = (f"pretrained speech loss {loss:.2f} (chance {CHANCE:.2f}; must be below {LOSS_CEILING:.2f})"
              + ("" if passed else ": near chance, the input layout does not match what this T3 was trained on"))
    return CheckResult("training input", passed, detail, {"speech_loss": round(loss, 4), "chance": round(CHANCE, 4)})


IDENTITY_TOLERANCE = 1e-3
"""Largest difference allowed between a target's log-probability in the training module and in inference's
teacher-forced path (fp32): the same computation, batched and masked in one, row by row in the other."""
LAYOUT_MARGIN = 1e-4
"""Nats per speech token by which the right layout must beat each wrong one (and by which CFG's unconditional branch
must differ from the conditional one). The two losses are computed on the same tokens, without sampling: only
rounding (~2e-6 here) separates two equal layouts, so any margin well above it is a preference the model learnt.
The tiny test model, trained 20 steps, prefers the right layout by 6.6e-4 to 1.4e-2; a published base, which learnt
its layout over far more steps, should by more."""
WRONG_LAYOUTS = {
    "single_bos": "one start-of-speech token instead of upstream's two",
    "positions_plus_one": "every speech position one higher",
    "prompt_2s": "the prompt trimmed to 2 s (50 tokens)",
    "uncond_text_kept": "text embeddings not zeroed on CFG's unconditional row",
}


@torch.no_grad()
def inference_logprobs(t3, batch: dict[str, Any], uncond: bool = False, wrong: str | None = None) -> torch.Tensor:
    """The log-probability inference's decoding gives each target speech token of the batch, row by row, teacher
    forced: the CFG pair's prefix from `decoding.prefix_embeds` (upstream's `prepare_input_embeds` plus its second
    start token), then the row's speech tokens fed at positions 1, 2, ...; the conditional row, or with `uncond` the
    unconditional one. `wrong` (a `WRONG_LAYOUTS` key) feeds that wrong layout instead. Shape as the training
    module's `speech_logprobs`: (B, T-1), NaN where no target is."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    from ..synthesis.decoding import prefix_embeds
    from ..training.model import ChatterboxForTraining

    targets = ChatterboxForTraining._targets(batch["speech_tokens"], batch["speech_loss_lens"])
    out = torch.full(targets.shape, float("nan"), device=targets.device)
    for i in range(targets.shape[0]):
        prompt = batch["prompt_speech_tokens"][i:i + 1, : int(batch["prompt_speech_lens"][i])]
        if wrong == "prompt_2s":
            prompt = prompt[:, :50]
        cond = T3Cond(speaker_emb=batch["speaker_emb"][i:i + 1], cond_prompt_speech_tokens=prompt,
                      emotion_adv=batch["emotion_adv"][i:i + 1])
        text = batch["text_tokens"][i:i + 1, : int(batch["text_token_lens"][i])]
        prefix, _ = prefix_embeds(t3, cond, text.expand(2, -1), cfg_weight=0.5)
        prefix = prefix[int(uncond and wrong != "uncond_text_kept")]
        fed = batch["speech_tokens"][i:i + 1, 1: int(batch["speech_token_lens"][i]) - 1]
        positions = torch.arange(1, fed.shape[1] + 1, device=fed.device)
        if wrong == "single_bos":
            prefix = prefix[:-1]
        elif wrong == "positions_plus_one":
            positions = positions + 1
            shift = t3.speech_pos_emb.get_fixed_embedding(1)[0] - t3.speech_pos_emb.get_fixed_embedding(0)[0]
            prefix = torch.cat([prefix[:-2], prefix[-2:] + shift])
        steps = t3.speech_emb(fed)[0] + t3.speech_pos_emb.get_fixed_embedding(positions)[0]
        embeds = torch.cat([prefix, steps])[None]
        hidden = t3.tfmr(inputs_embeds=embeds, use_cache=False, return_dict=True).last_hidden_state[0]
        logits = t3.speech_head(hidden[prefix.shape[0] - 1:]).float()
        wanted = targets[i, : logits.shape[0]]
        picked = torch.log_softmax(logits, -1).gather(-1, wanted.clamp_min(0)[:, None])[:, 0]
        out[i, : logits.shape[0]] = picked.masked_fill(wanted == -100, float("nan"))
    return out


def check_layout(t3, rows, module=None) -> CheckResult:
    """Does training teach T3 in the layout inference decodes with? On prepared rows (`rows`, tokenised):
    1. the training module's (`module`, default `ChatterboxForTraining`) log-probability of every target speech token
       equals inference's teacher-forced path (`inference_logprobs`) within `IDENTITY_TOLERANCE`, on conditional
       rows and on CFG's unconditional ones;
    2. that layout beats each wrong one (`WRONG_LAYOUTS`) by `LAYOUT_MARGIN` nats per token: the speech loss is lower
       than with a single start token, positions one higher or a 2 s prompt, and the unconditional rows differ from
       the conditional ones (with the text not zeroed they would be the same).
    A wrong layout in the training module fails 1 and 2; a base T3 whose own layout is not the one inference feeds
    fails 2. Runs with dropout off."""
    from ..training.model import ChatterboxForTraining

    module = module or ChatterboxForTraining(t3, None)
    batch = _collated(t3, rows)
    args = _training_args(batch)
    figures: dict[str, Any] = {}
    with torch.no_grad(), _eval_mode(module):
        trained, inferred = {}, {}
        for uncond in (False, True):
            flags = torch.full((len(rows),), uncond, dtype=torch.bool, device=t3.device)
            trained[uncond] = module.speech_logprobs(**args, text_uncond=flags)
            inferred[uncond] = inference_logprobs(t3, batch, uncond)
        identity = max(float((trained[u] - inferred[u]).abs().nan_to_num(0).max()) for u in (False, True))
        loss = -float(trained[False].nanmean())
        figures.update(identity=identity, speech_loss=round(loss, 4))
        margins = {}
        for wrong in ("single_bos", "positions_plus_one", "prompt_2s"):
            margins[wrong] = -float(inference_logprobs(t3, batch, wrong=wrong).nanmean()) - loss
        margins["uncond_text_kept"] = float((trained[True] - trained[False]).abs().nanmean())
    figures["margins"] = {k: float(f"{v:.3g}") for k, v in margins.items()}
    failed = [f"{WRONG_LAYOUTS[k]} ({v:+.1e})" for k, v in margins.items() if not v >= LAYOUT_MARGIN]
    passed = identity <= IDENTITY_TOLERANCE and not failed
    detail = (f"training log-probs equal inference's teacher-forced ones within {identity:.1e} (tolerance "
              f"{IDENTITY_TOLERANCE:.0e}); the layout beats each wrong one by at least {LAYOUT_MARGIN:g} nats/token "
              f"({', '.join(f'{k} {v:+.1e}' for k, v in margins.items())})"
              if passed else
              f"largest log-prob difference to inference {identity:.1e} (tolerance {IDENTITY_TOLERANCE:.0e}); "
              f"no margin of {LAYOUT_MARGIN:g} nats/token over: {', '.join(failed) or 'none'}")
    return CheckResult("training layout", passed, detail, figures)


@torch.no_grad()
def flow_loss(flow, batch: dict[str, Any], seeds: int = 8) -> float:
    """S3Gen's flow-matching loss (upstream's `compute_loss`, eval mode) on a batch, averaged over `seeds` draws of
    its randomness (time, noise, prompt length and condition drop, each seeded), so two batches compare draw for
    draw."""
    import random

    from ..training.model import ChatterboxForTraining

    module = ChatterboxForTraining(None, flow)
    total = 0.0
    with _eval_mode(flow):
        for seed in range(seeds):
            state = random.getstate()
            random.seed(seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                total += float(module.s3gen_loss(batch["s3_tokens"], batch["s3_token_lens"], batch["speech_feat"],
                                                 batch["speech_feat_lens"], batch["xvector"]))
            random.setstate(state)
    return total / seeds


def _by_speaker_in_turn(split, count: int) -> list[dict[str, Any]]:
    """Up to `count` rows of `split`, one speaker after another (a prepared split is sorted by speaker)."""
    by_speaker: dict[str, list[int]] = {}
    for index, speaker in enumerate(split["speaker_id"]):
        by_speaker.setdefault(speaker, []).append(index)
    queues = list(by_speaker.values())
    chosen = [queue[turn] for turn in range(max(map(len, queues), default=0)) for queue in queues
              if turn < len(queue)][:count]
    return list(split.select(chosen))


def check_s3gen_speaker(flow, rows, t3) -> CheckResult:
    """S3Gen's training rows condition the flow on the right speaker: on one batch (`rows` with S3Gen features of at
    least two speakers), the flow loss with each row's own x-vector is lower than with another speaker's (the prompt
    is upstream's own: a prefix of the row's own mel, inside `compute_loss`)."""
    speakers = [row["speaker_id"] for row in rows]
    if len(set(speakers)) < 2:
        return CheckResult("S3Gen conditioning", True, "not checked: the clips hold one speaker, and the check "
                           "compares speakers (pass --data with clips of two or more)", {}, skipped=True)
    batch = _collated(t3, rows, with_s3gen=True)
    # each row takes the x-vector of the next row of another speaker
    order = [next(j for k in range(1, len(rows)) if speakers[(j := (i + k) % len(rows))] != speakers[i])
             for i in range(len(rows))]
    right = flow_loss(flow, batch)
    shuffled = flow_loss(flow, {**batch, "xvector": batch["xvector"][order]})
    passed = right < shuffled
    detail = (f"flow loss {right:.4f} with each row's own x-vector, {shuffled:.4f} with another speaker's"
              + ("" if passed else ": the flow does not prefer the right speaker, the rows' conditioning is wrong"))
    return CheckResult("S3Gen conditioning", passed, detail, {"right": round(right, 5), "shuffled": round(shuffled, 5)})


def speak_clips(model, folder: Path, texts: list[str] = CLIP_TEXTS, seed: int = 0) -> Path:
    """Clips of the base speaking `texts` in the folder layout, in two voices taken in turn: its default voice and the
    Spanish reference the precision guard ships (`synthesis.tts.GUARD_VOICE`), two speakers for the S3Gen check."""
    import csv

    from ..synthesis.tts import GUARD_VOICE

    voices = {"base_voice": None, "guard_voice": GUARD_VOICE}
    rows = [("audio_path", "transcript", "speaker_id")]
    for i, text in enumerate(texts):
        speaker = list(voices)[i % len(voices)]
        wav = model.generate(text, audio_prompt_path=voices[speaker], seed=seed + i)
        path = folder / "audio" / speaker / f"clip_{i:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, wav.squeeze(0).numpy(), model.sr)
        rows.append((path.relative_to(folder).as_posix(), text, speaker))
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return folder


def run_checks(base: str, t3_model: str | None, workdir: Path, data: str | None = None, device: str = "cpu",
               steps: int = 5) -> list[CheckResult]:
    """All the checks (see the module docstring); returns each result, stopping at the first failure before the
    training run."""
    from ..data.config import DataConfig
    from ..models.config import ModelConfig
    from ..data.collator import usable_rows
    from ..data.dataset import load_prepared, tokenize_dataset
    from ..data.prepare import prepare_dataset
    from ..models.merge import merge_adapter
    from ..synthesis.tts import ChatterboxLatamTTS
    from ..training.config import Recipe, TrainingConfig
    from ..training.run import run_finetune

    model = ChatterboxLatamTTS.from_pretrained(base, device=device, t3_model=t3_model)
    results = [check_decoding(model)]
    if not results[-1].passed:
        return results
    clips = Path(data) if data else speak_clips(model, workdir / "clips")
    model_config = ModelConfig(base_model=base, t3_model=t3_model, lora_rank=8, lora_alpha=16, train_s3gen=True)
    data_config = DataConfig(input_path=str(clips), prepared_dir=str(workdir / "data"), validation_size=0.0,
                             test_size=0.0, device=device, max_rows=32)
    prepare_dataset(model_config, data_config, progress=False)
    train = tokenize_dataset(load_prepared(workdir / "data"), model.tts.tokenizer, "es")["train"]
    results.append(check_loss(model.tts.t3, train))
    if results[-1].passed:
        rows = _by_speaker_in_turn(usable_rows(train), 8)
        results.append(check_layout(model.tts.t3, rows))
        if results[-1].passed:
            results.append(check_s3gen_speaker(model.tts.s3gen.flow, rows, model.tts.t3))
    del model
    if not results[-1].passed:
        return results
    recipe = Recipe(model_config, data_config,
                    TrainingConfig(output_dir=str(workdir / "checkpoints"), per_device_train_batch_size=2,
                                   gradient_accumulation_steps=1, learning_rate=1e-4, max_steps=steps, warmup_steps=0,
                                   bf16=device != "cpu", save_steps=steps, report_to=["none"], logging_steps=1,
                                   eval_audio_samples=0))
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
    parser.add_argument("--data", default=None, help="A folder in the folder layout with real Spanish clips (default: "
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
        print(f"[{'skip' if result.skipped else 'pass' if result.passed else 'FAIL'}] {result.name}: {result.detail}")
    print(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.passed for r in results) and len(results) == CHECKS else 1


if __name__ == "__main__":
    sys.exit(main())

