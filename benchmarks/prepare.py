"""Feature-extraction speed: batched (what preparation does) against clip by clip, on the same clips.

    python benchmarks/prepare.py [--clips 48] [--batch_seconds 120] [--device cpu|cuda] [--with_s3gen]

Uses the tiny checkpoint and the espeak-ng corpus (built under runs/bench/ if missing). The S3 tokenizer,
VoiceEncoder and CAMPPlus keep their full upstream sizes in the tiny checkpoint, so these are the real encoders'
speeds. Prints clips/s and audio seconds per second for both ways, and their ratio (last line).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from chatterbox_latam.data.audio import CleaningConfig, clean_audio, decode_audio
from chatterbox_latam.data.features import FeatureExtractor, length_batches
from chatterbox_latam.models.checkpoint import resolve_checkpoint
from chatterbox_latam.testing.espeak_corpus import generate_corpus
from chatterbox_latam.testing.tiny_model import build_tiny_checkpoint
from chatterbox_latam.utils import default_device


def run(extractor: FeatureExtractor, wavs, batches) -> float:
    if extractor.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        extractor.extract([wavs[i] for i in batch])
    if extractor.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/bench", help="Where the tiny checkpoint and corpus live.")
    parser.add_argument("--clips", type=int, default=48, help="Number of clips to extract.")
    parser.add_argument("--batch_seconds", type=float, default=120.0, help="Padded audio seconds per batch.")
    parser.add_argument("--device", default=default_device(), help="cpu or cuda.")
    parser.add_argument("--with_s3gen", action="store_true", help="Also extract the S3Gen mel and x-vector.")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    checkpoint = resolve_checkpoint(build_tiny_checkpoint(workdir / "tiny_model"))
    corpus = generate_corpus(workdir / "corpus", utterances_per_speaker=max(8, -(-args.clips // 6)))
    files = sorted((corpus / "audio").rglob("*.wav"))[: args.clips]
    wavs = [clean_audio(*decode_audio(f), CleaningConfig()) for f in files]
    seconds = sum(len(w) for w in wavs) / 24_000

    extractor = FeatureExtractor(checkpoint, device=args.device, with_s3gen=args.with_s3gen)
    torch.set_grad_enabled(False)
    run(extractor, wavs[:4], [[0, 1, 2, 3]])  # warm-up
    batched = run(extractor, wavs, length_batches([len(w) / 24_000 for w in wavs], args.batch_seconds))
    single = run(extractor, wavs, [[i] for i in range(len(wavs))])

    threads = torch.get_num_threads()
    print(f"device={args.device} threads={threads} clips={len(wavs)} audio={seconds:.1f}s s3gen={args.with_s3gen}")
    for name, elapsed in (("batched", batched), ("clip-by-clip", single)):
        print(f"{name:>13}: {elapsed:6.2f} s  {len(wavs) / elapsed:6.2f} clips/s  {seconds / elapsed:7.1f} audio s/s")
    print(f"batched / clip-by-clip speed: {single / batched:.2f}x")


if __name__ == "__main__":
    main()
