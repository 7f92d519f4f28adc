"""Training speed from the prepared feature cache against on-the-fly feature extraction, and LoRA memory.

    python benchmarks/training.py [--steps 20] [--batch_size 4]

Uses the demo's tiny checkpoint and prepared corpus (run `make demo` first). Both speed runs use the same
Trainer, collator, model and batches; the on-the-fly run computes what public fine-tuning scripts compute in
`__getitem__` (decode the clip, S3-tokenise it, VoiceEncoder-embed and tokenise the reference prompt) instead of
reading the cache. The memory part runs one process per mode and reports its peak resident memory (CPU) or peak
allocated GPU memory for a LoRA step and for a full fine-tuning step of T3. The last line is the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from chatterbox_latam.training.config import RECIPE_SECTIONS, Recipe
from chatterbox_latam.parser import parse_recipe
from chatterbox_latam.constants import S3GEN_SR
from chatterbox_latam.data.collator import ChatterboxCollator
from chatterbox_latam.data.dataset import load_prepared, tokenize_dataset
from chatterbox_latam.data.features import FeatureExtractor
from chatterbox_latam.data.references import join_clips
from chatterbox_latam.models.checkpoint import resolve_checkpoint
from chatterbox_latam.models.loading import load_text_tokenizer, t3_config
from chatterbox_latam.training.run import build_model, training_arguments
from chatterbox_latam.training.trainer import ChatterboxTrainer
from chatterbox_latam.utils import default_device

RECIPE = "training/recipes/tiny_cpu.yaml"


class OnTheFlyFeatures(torch.utils.data.Dataset):
    """What the public scripts do: every item decodes audio and runs the encoders again, every epoch."""

    def __init__(self, split, all_rows, extractor: FeatureExtractor):
        self.split, self.extractor = split, extractor
        self.audio_of = {row_id: audio for row_id, audio in zip(all_rows["id"], all_rows["audio"])}

    def __len__(self):
        return len(self.split)

    def __getitem__(self, index):
        row = self.split[index]
        wav = row["audio"].get_all_samples().data.mean(0).numpy()
        own = self.extractor.extract([wav])[0]
        reference = join_clips([self.audio_of[clip].get_all_samples().data.mean(0).numpy()
                                for clip in row["prompt_ids"]], S3GEN_SR)
        prompt = self.extractor.reference_features([reference])[0]
        return {"text_tokens": row["text_tokens"], "speech_tokens": own.speech_tokens.tolist(),
                "prompt_speech_tokens": prompt.prompt_tokens.tolist(), "prompt_speaker_emb": prompt.speaker_emb.tolist(),
                "duration": row["duration"]}


def recipe(steps: int, batch_size: int, output: str) -> Recipe:
    return Recipe(*parse_recipe(RECIPE_SECTIONS, [
        "--config", RECIPE, "--max_steps", str(steps), "--batch_size", str(batch_size), "--save_every", "100000",
        "--train_s3gen", "false", "--report_to", "none", "--eval_audio_samples", "0", "--checkpoint_dir", output,
        "--log_every", "100000", "--group_by_length", "false"]))


def speed(args) -> dict:
    r = recipe(args.steps, args.batch_size, "runs/bench/training")
    checkpoint = resolve_checkpoint(r.model.base_model)
    dataset = tokenize_dataset(load_prepared(r.data.prepared_dir), load_text_tokenizer(checkpoint), "es")
    hp = t3_config(checkpoint.config)
    collator = ChatterboxCollator(hp.start_text_token, hp.stop_text_token, hp.start_speech_token, hp.stop_speech_token)
    extractor = FeatureExtractor(checkpoint, device=default_device())
    from datasets import concatenate_datasets

    all_rows = concatenate_datasets([split.select_columns(["id", "audio"]) for split in dataset.values()])
    results = {}
    for name, train in (("cache", dataset["train"]), ("on-the-fly", OnTheFlyFeatures(dataset["train"], all_rows,
                                                                                      extractor))):
        model, _ = build_model(r, checkpoint)
        trainer = ChatterboxTrainer(model=model, args=training_arguments(r, r.training.output_dir, False),
                                    train_dataset=train, data_collator=collator)
        trainer.args.remove_unused_columns = name == "cache"
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
        tokens = sum(len(t) + 2 for t in dataset["train"]["speech_tokens"]) * (
            args.steps * args.batch_size / len(dataset["train"]))
        results[name] = {"steps_per_s": args.steps / elapsed, "speech_tokens_per_s": tokens / elapsed}
    return results


def peak_added_cpu_memory(step) -> float:
    """Peak of the bytes torch allocated (minus freed) while `step()` ran, from the profiler's memory events:
    CPU torch keeps no allocator statistics, and resident memory hides allocations that reuse freed pages."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    running = peak = 0
    for event in events:
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak / 2**20


def memory(mode: str, batch_size: int) -> dict:
    """Two optimizer steps of LoRA or full fine-tuning of T3 (in its own process): the memory they add."""
    r = recipe(1, batch_size, "runs/bench/memory")
    r.model.modules_to_save = None  # the real-base setting: only LoRA weights train
    checkpoint = resolve_checkpoint(r.model.base_model)
    dataset = tokenize_dataset(load_prepared(r.data.prepared_dir), load_text_tokenizer(checkpoint), "es")
    device = default_device()
    model, _ = build_model(r, checkpoint)
    if mode == "full":
        model.t3.requires_grad_(True)
    model.to(device)
    hp = model.t3.hp
    collator = ChatterboxCollator(hp.start_text_token, hp.stop_text_token, hp.start_speech_token, hp.stop_speech_token)
    batch = {k: v.to(device) for k, v in collator([dataset["train"][i] for i in range(batch_size)]).items()
             if torch.is_tensor(v)}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        for _ in range(2):
            model(**batch)["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)  # gradients stay allocated, as in a training loop

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        added = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        added = peak_added_cpu_memory(step)
    return {"mode": mode, "trainable": trainable, "added_mb": added, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--memory_mode", choices=["lora", "full"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_mode:
        print(json.dumps(memory(args.memory_mode, args.batch_size)))
        return
    mem = {}
    for mode in ("lora", "full"):
        out = subprocess.run([sys.executable, __file__, "--memory_mode", mode, "--batch_size", str(args.batch_size)],
                             capture_output=True, text=True, check=True).stdout
        mem[mode] = json.loads(out.strip().splitlines()[-1])
    results = speed(args)
    print(f"threads={torch.get_num_threads()} steps={args.steps} batch_size={args.batch_size}")
    for name, r in results.items():
        print(f"{name:>10}: {r['steps_per_s']:.3f} steps/s  {r['speech_tokens_per_s']:.1f} speech tokens/s")
    for mode, m in mem.items():
        print(f"{mode:>10}: {m['trainable'] / 1e6:.2f}M trainable T3 parameters, a training step adds "
              f"{m['added_mb']:.0f} MB at its peak ({m['device']})")
    print(f"full / LoRA step memory: {mem['full']['added_mb'] / max(mem['lora']['added_mb'], 1e-9):.2f}x")
    print(f"cache / on-the-fly speed: {results['cache']['steps_per_s'] / results['on-the-fly']['steps_per_s']:.2f}x")


if __name__ == "__main__":
    main()
