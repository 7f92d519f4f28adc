"""Small things every stage needs, one copy each: all-or-nothing writes (an interrupted run never leaves a file or
folder that looks complete), WAV encoding, and the default device. No torch import until a device is asked for."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary sibling of `path` to write; when the block ends without error it is renamed over `path`,
    otherwise it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def content_digest(*parts: bytes | str) -> str:
    """SHA-256 of the parts in order (bytes, or text as UTF-8): the key of content-keyed caches."""
    import hashlib

    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
    return digest.hexdigest()


def write_atomic(path: str | os.PathLike, content: bytes) -> None:
    """Writes `content` to a temporary sibling, then renames it over `path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(content)


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary sibling of `final` to fill; when the block ends without error it replaces
    `final` (whatever was there, removed only once the new one is in place), otherwise it is removed and `final`
    is left as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would make the finished folder private
    previous = staging.with_name(staging.name + ".previous")
    try:
        yield staging
        if final.exists():
            final.rename(previous)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


def wav_bytes(wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> bytes:
    """A WAV file in memory: 1-D samples, or (samples, channels); 16-bit PCM unless `subtype` says otherwise."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(wav), sample_rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def write_wav(path: str | os.PathLike, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> Path:
    """`wav_bytes` written atomically to `path`."""
    write_atomic(path, wav_bytes(wav, sample_rate, subtype))
    return Path(path)


def default_device() -> str:
    """"cuda" when PyTorch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# CPU features that decide which precisions run natively: bf16 arithmetic (AVX512-BF16, AMX), int8 dot products
# (VNNI, AMX-INT8) and the vector width PyTorch's kernels were dispatched to.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cache_dir() -> Path:
    """Where the project keeps what it derives once per model or machine (llama.cpp GGUFs, the `auto` mode's
    measurements): $CHATTERBOX_LATAM_CACHE, else ~/.cache/chatterbox_latam."""
    return Path(os.getenv("CHATTERBOX_LATAM_CACHE") or Path.home() / ".cache" / "chatterbox_latam")


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""CPU flags of bf16 arithmetic (x86: AVX512-BF16, AMX; Arm: the BF16 extension). Without one, PyTorch emulates
bf16 matrix products, several times slower than fp32's."""


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) of this machine's CPU, from /proc/cpuinfo (elsewhere: the platform's name, no flags)."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() in ("flags", "Features"):
                    flags = set(value.split())
    except OSError:
        pass
    return model, frozenset(flags)


ONEDNN_BF16_ISAS = ("BF16", "FP16", "AMX", "AVX10", "ALL", "DEFAULT")
"""oneDNN ISA names (the `ONEDNN_MAX_CPU_ISA` setting) that include bf16 arithmetic: a lower one (e.g. AVX2, or
AVX512_CORE_VNNI) makes PyTorch's CPU matrix products emulate bf16 even on a CPU that has it."""


def cpu_has_bf16() -> bool:
    """Whether PyTorch computes bf16 matrix products natively here: the CPU has it (`BF16_FLAGS`) and oneDNN is not
    held below it (`ONEDNN_BF16_ISAS`). Without /proc/cpuinfo, whether it is an Apple or other Arm CPU recent enough
    for PyTorch to dispatch bf16 kernels is not known: False."""
    limit = os.getenv("ONEDNN_MAX_CPU_ISA") or os.getenv("DNNL_MAX_CPU_ISA")
    if limit and not any(name in limit.upper() for name in ONEDNN_BF16_ISAS):
        return False
    return any(flag in cpu_info()[1] for flag in BF16_FLAGS)


def cpu_description() -> str:
    """The CPU in one line, for benchmark headers: model, cores PyTorch uses, its kernel dispatch level, and which
    of `CPU_FLAGS` it has (read from /proc/cpuinfo; on other systems only what PyTorch reports)."""
    import torch

    model, flags = cpu_info()
    shown = [flag for flag in CPU_FLAGS if flag in flags]
    return (f"{model}, {torch.get_num_threads()} threads, PyTorch dispatch {torch.backends.cpu.get_cpu_capability()}"
            f"{', ' + ' '.join(shown) if shown else ''}")
