"""T3's backbone on llama.cpp (`llama-cpp-python`, the cpu-fast extra): the `llamacpp-q4_0` / `llamacpp-q8_0` modes
of `synthesis.precision`.

T3's Llama backbone and speech head are written as a GGUF (`cpu_fast.gguf`) and run by llama.cpp's CPU kernels, which
decode from 4- or 8-bit blocks at close to the memory bound; everything around them stays upstream's and PyTorch's:
the conditioning, text and speech embeddings with their learned positions (fed as llama.cpp's embeddings input),
CFG and the sampling (`decoding`), on the speech logits llama.cpp computes (its output layer is the speech head, at
8 bits in the 4-bit file: PyTorch's fp32 head on llama.cpp's hidden states would read 33 MB more per step). The CFG
pair, and the utterances decoded together, are sequences of one llama.cpp batch, each with its own positions, so
left padding is never needed; the conditioning they all start with is computed once per voice (`prefill`).

llama.cpp exposes no attention maps: upstream's alignment heuristics cannot run on this backbone, and decoding runs
without them (as v3 and batched decoding do). The GGUF is written once per T3 (keyed by its weights) into
`utils.cache_dir()`.

On a CPU with AMX, llama.cpp puts 4- and 8-bit weights into its AMX buffers, and two things crash its AMX matrix
product. A GCC (12 here) whose dead-store elimination drops the tile configuration's stores before `ldtilecfg`
(ggml-org/llama.cpp#20824 is this crash): `make install` compiles llama.cpp with `-fno-dse`. And PyTorch's oneDNN,
which releases the AMX tile state after its own AMX kernels on the threads it runs on, while ggml configures the
tiles once per thread: on a thread both use (the caller's, which computes its share of both), ggml's next tile
instruction is illegal. So every llama.cpp call here runs on a thread of its own (`_on_llama_thread`), and
`make install` builds llama.cpp without OpenMP (an OpenMP team of that thread's own would contend with PyTorch's
on two cores). Whether AMX runs is probed once per library in a subprocess (`amx_runs`); where it
does not, the weights are loaded without llama.cpp's extra buffer types and its AVX-512 kernels run on them.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from ...compat import module_copy_with
from ...constants import ENGINE_MODES
from ...utils import cache_dir, write_atomic
from . import missing_extra


def available() -> bool:
    """Whether the cpu-fast extra is installed: llama-cpp-python (`make install` builds it from source for this CPU)
    and gguf (which writes the file llama.cpp runs)."""
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def weights_key(t3) -> str:
    """A key for T3's backbone weights (names, shapes and a sample of each tensor's values): a changed weight
    gets another GGUF."""
    digest = hashlib.sha256()
    for name, value in list(t3.tfmr.state_dict().items()) + [("speech_head", t3.speech_head.weight),
                                                              ("speech_emb", t3.speech_emb.weight)]:
        flat = value.detach().reshape(-1)
        sample = torch.cat([flat[:256], flat[flat.numel() // 2: flat.numel() // 2 + 256], flat[-256:]])
        digest.update(f"{name}:{tuple(value.shape)}:".encode())
        digest.update(sample.float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


_LOG_LOCK = threading.Lock()
_QUIET = None


def _quiet() -> None:
    """llama.cpp logs every load to stderr: keep it for errors only."""
    global _QUIET
    import llama_cpp

    with _LOG_LOCK:
        if _QUIET is None:
            @llama_cpp.llama_log_callback
            def _log(level, text, _user):
                if level == 4:  # GGML_LOG_LEVEL_ERROR
                    os.write(2, text)

            _QUIET = _log
            llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()


@functools.lru_cache(maxsize=1)
def cpu_buffer_types() -> tuple[str, ...]:
    """The names of the CPU device's weight buffer types: its own ('CPU') and its extra ones (e.g. 'AMX',
    'CPU_REPACK'), through ggml's device registry."""
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    ggml, base = ctypes.CDLL(str(lib / "libggml.so")), ctypes.CDLL(str(lib / "libggml-base.so"))
    pointer, name = ctypes.c_void_p, ctypes.c_char_p
    ggml.ggml_backend_dev_by_type.restype, ggml.ggml_backend_dev_by_type.argtypes = pointer, [ctypes.c_int]
    base.ggml_backend_dev_backend_reg.restype, base.ggml_backend_dev_backend_reg.argtypes = pointer, [pointer]
    base.ggml_backend_dev_buffer_type.restype, base.ggml_backend_dev_buffer_type.argtypes = pointer, [pointer]
    base.ggml_backend_reg_get_proc_address.restype = pointer
    base.ggml_backend_reg_get_proc_address.argtypes = [pointer, name]
    base.ggml_backend_buft_name.restype, base.ggml_backend_buft_name.argtypes = name, [pointer]
    device = ggml.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
    if not device:
        return ()
    found = [base.ggml_backend_dev_buffer_type(device)]
    get = base.ggml_backend_reg_get_proc_address(base.ggml_backend_dev_backend_reg(device),
                                                 b"ggml_backend_dev_get_extra_bufts")
    extra = ctypes.CFUNCTYPE(ctypes.POINTER(pointer), pointer)(get)(device) if get else None
    while extra and extra[len(found) - 1]:
        found.append(extra[len(found) - 1])
    return tuple(base.ggml_backend_buft_name(buffer_type).decode() for buffer_type in found)


AMX_PROBES = "llamacpp-amx.json"
"""Where `amx_runs` keeps its answers, in `cache_dir()`: one per llama.cpp library and weight type."""


def _library() -> Path:
    import llama_cpp

    return (Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so").resolve()


def _file_type(path: str | os.PathLike) -> int:
    """The GGUF's `general.file_type` (llama.cpp's LlamaFileType: 0 all f32, 1 mostly f16, 2 q4_0, 7 q8_0)."""
    import gguf

    field = gguf.GGUFReader(str(path)).get_field("general.file_type")
    return int(field.contents()) if field is not None else 0


_LLAMA_THREAD: tuple[int, object] | None = None  # (process id, executor): a forked child makes its own
_THREAD_LOCK = threading.Lock()


def _on_llama_thread(function, *args):
    """Runs `function(*args)` on the one thread that makes llama.cpp's calls in this process (PyTorch never runs
    there: see the module docstring), and returns its result."""
    global _LLAMA_THREAD
    from concurrent.futures import ThreadPoolExecutor

    with _THREAD_LOCK:
        if _LLAMA_THREAD is None or _LLAMA_THREAD[0] != os.getpid():
            _LLAMA_THREAD = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp"))
    return _LLAMA_THREAD[1].submit(function, *args).result()


def amx_runs(path: str | os.PathLike) -> bool:
    """Whether llama.cpp's AMX matrix product runs on the quantised weights of the GGUF at `path` with this
    llama.cpp library (see the module docstring): a subprocess loads the file with the AMX buffers and decodes a
    pair of sequences, which a miscompiled library answers by crashing. Asked once per library (its path, size and
    time) and weight type; the answer is kept in `cache_dir()`/`AMX_PROBES`. f32 and f16 weights never go into AMX
    buffers: True without asking."""
    file_type = _file_type(path)
    if file_type in (0, 1):
        return True
    library = _library()
    stat = library.stat()
    key = f"{library}:{stat.st_size}:{int(stat.st_mtime)}:{file_type}"
    known_path = cache_dir() / AMX_PROBES
    try:
        known = json.loads(known_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key not in known:
        probe = ("import sys; from chatterbox_latam.synthesis.cpu_fast.engine import _decode_with_amx; "
                 "_decode_with_amx(sys.argv[1])")
        try:
            done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, timeout=600)
            known[key] = done.returncode == 0
            why = f"exit status {done.returncode}: {done.stderr.decode(errors='replace')[-400:].strip()}"
        except subprocess.TimeoutExpired:
            known[key] = False
            why = "no answer in 600 s"
        if not known[key]:
            warnings.warn(f"llama.cpp's AMX matrix product fails with {library} ({why}); its weights stay out of "
                          "the AMX buffers (slower). `make install` builds llama.cpp so that it runs: reinstall "
                          "llama-cpp-python that way (with -fno-dse, past pip's wheel cache).", stacklevel=2)
        write_atomic(known_path, json.dumps(known, indent=1).encode())
    return known[key]


def _decode_with_amx(path: str) -> None:
    """`amx_runs`'s subprocess: a prompt and one step for two sequences (the CFG pair: llama.cpp's AMX tile
    kernels serve batches of more than one row), the weights in the AMX buffers."""
    import gguf

    hidden = int(gguf.GGUFReader(path).get_field("llama.embedding_length").contents())
    backbone = LlamaCppBackbone(path, type("Config", (), {"hidden_size": hidden}), threads=1, amx=True)
    backbone.prefill(torch.randn(2, 4, hidden), [0, 0], 2)
    backbone.step(torch.randn(2, hidden))


def _weight_buffers(params, path: str | os.PathLike, amx: bool | None) -> bool:
    """Keeps the weights out of llama.cpp's AMX buffers, where the CPU backend offers them but they do not run
    (`amx_runs`; `amx` True or False decides without asking), by loading them without extra buffer types; returns
    whether it did."""
    if "AMX" not in cpu_buffer_types() or amx is True or (amx is None and amx_runs(path)):
        return False
    params.use_extra_bufts = False
    return True


class LlamaCppBackbone:
    """T3's backbone in a GGUF file, run by llama.cpp: `prefill` a batch of prompts given as embeddings, then `step`
    one embedding per sequence; both return the speech logits (`logits=True`) or the final normed hidden states
    (what T3's speech head reads). `forward` runs whole sequences (teacher forcing) with nothing kept. `amx`: put the
    weights into llama.cpp's AMX buffers (True), keep them out (False), or where they run (None: `amx_runs`)."""

    def __init__(self, path: str | os.PathLike, config, threads: int | None = None, logits: bool = False,
                 amx: bool | None = None):
        import llama_cpp

        _quiet()
        self.path, self.config = Path(path), config
        self.hidden_size = config.hidden_size
        self.threads = threads or torch.get_num_threads()
        self.logits = logits
        params = llama_cpp.llama_model_default_params()
        self.amx_avoided = _weight_buffers(params, self.path, amx)
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {self.path}.")
        self.width = (llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self._model)) if logits
                      else self.hidden_size)
        self._ctx = None
        self._capacity = (0, 0, 0)  # sequences, tokens per sequence and tokens per batch of the current context
        self._batch = None
        self._batch_size = 0
        self._prefix: bytes | None = None  # the shared prefix whose KV cache the spare sequence holds
        self.prefixes_computed = 0

    # -- llama.cpp state ------------------------------------------------------------------------------------------
    def _context(self, sequences: int, tokens: int, batch_tokens: int, keep_prefix: bool = False) -> None:
        """A context for `sequences` sequences of up to `tokens` tokens, fed `batch_tokens` at a time, plus a spare
        sequence that holds a shared prefix (`prefill`); an empty KV cache but for that prefix when `keep_prefix`
        (the context there is reused when it is big enough)."""
        import llama_cpp

        if (self._ctx is None or sequences > self._capacity[0] or tokens > self._capacity[1]
                or batch_tokens > self._capacity[2]):
            self._free_context()
            params = llama_cpp.llama_context_default_params()
            tokens = max(tokens, 256)
            params.n_ctx = (sequences + 1) * tokens
            params.n_batch = max(batch_tokens, 512)
            params.n_ubatch = 512
            params.n_outputs_max = params.n_batch  # teacher forcing reads every token's output
            params.n_seq_max = sequences + 1
            params.kv_unified = True
            params.n_threads = params.n_threads_batch = self.threads
            params.embeddings = not self.logits
            params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
            params.no_perf = True
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise RuntimeError(f"llama.cpp could not make a context for {sequences} x {tokens} tokens.")
            self._capacity = (sequences, tokens, params.n_batch)
            self._prefix = None
        elif keep_prefix:
            memory = llama_cpp.llama_get_memory(self._ctx)
            for sequence in range(self._capacity[0]):
                llama_cpp.llama_memory_seq_rm(memory, sequence, -1, -1)
        else:
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
            self._prefix = None
        self._ensure_batch(batch_tokens)

    def _ensure_batch(self, tokens: int) -> None:
        import llama_cpp

        if tokens > self._batch_size:
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
            self._batch = llama_cpp.llama_batch_init(tokens, self.hidden_size, 1)
            self._batch_size = tokens

    def _free_context(self) -> None:
        import llama_cpp

        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None

    def __del__(self):
        try:
            import llama_cpp

            self._free_context()
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
            if self._model:
                llama_cpp.llama_model_free(self._model)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _decode(self, embeds: np.ndarray, positions: np.ndarray, sequences: np.ndarray,
                outputs: np.ndarray) -> torch.Tensor:
        """One llama.cpp batch: token i has embedding `embeds[i]`, position `positions[i]`, sequence `sequences[i]`;
        returns the logits or hidden states of the tokens flagged in `outputs`, in order, as a float32 tensor."""
        import llama_cpp

        n = len(embeds)
        self._ensure_batch(n)
        batch = self._batch
        batch.n_tokens = n
        embeds = np.ascontiguousarray(embeds, dtype=np.float32)
        ctypes.memmove(batch.embd, embeds.ctypes.data, embeds.nbytes)
        np.ctypeslib.as_array(batch.pos, shape=(n,))[:] = positions
        np.ctypeslib.as_array(batch.n_seq_id, shape=(n,))[:] = 1
        np.ctypeslib.as_array(batch.logits, shape=(n,))[:] = outputs
        for i, sequence in enumerate(sequences.tolist()):
            batch.seq_id[i][0] = sequence
        status = _on_llama_thread(llama_cpp.llama_decode, self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama.cpp failed to decode a batch of {n} tokens (status {status}).")
        every, ith = ((llama_cpp.llama_get_logits, llama_cpp.llama_get_logits_ith) if self.logits
                      else (llama_cpp.llama_get_embeddings, llama_cpp.llama_get_embeddings_ith))
        wanted = np.flatnonzero(outputs)
        if len(wanted) == n:  # every token's: one contiguous block, in batch order
            return torch.from_numpy(np.ctypeslib.as_array(every(self._ctx), shape=(n, self.width)).copy())
        # (llama.cpp keeps every token's hidden state when embeddings are on: ask for each wanted one by its index)
        out = np.empty((len(wanted), self.width), dtype=np.float32)
        for row, i in enumerate(wanted.tolist()):
            out[row] = np.ctypeslib.as_array(ith(self._ctx, i), shape=(self.width,))
        return torch.from_numpy(out)

    # -- what decoding calls ---------------------------------------------------------------------------------------
    def prefill(self, embeds: torch.Tensor, pads: list[int], max_new_tokens: int, shared: int = 0) -> torch.Tensor:
        """Starts one sequence per row of `embeds` (rows, L, D), leaving out each row's `pads` left-padding tokens,
        with room for `max_new_tokens` more; returns each row's last logits or hidden state (rows, V or D).

        `shared`: every row starts with the same `shared` embeddings (T3's conditioning: a voice's speaker
        embedding and prompt, the same for every sentence and both CFG rows). They are computed once, kept in a
        spare sequence and copied into each row's (llama.cpp shares the cells), and computed again only when they
        change: a voice's later sentences pay for their text alone."""
        import llama_cpp

        rows, length, _ = embeds.shape
        pads = [pads[row * len(pads) // rows] for row in range(rows)]  # one per utterance: its rows'
        data = embeds.detach().float().cpu().numpy()
        self._context(rows, length + max_new_tokens + 1, rows * length, keep_prefix=shared > 0)
        if shared:
            prefix = data[0, pads[0]: pads[0] + shared]
            key = hashlib.sha256(prefix.tobytes()).digest()
            memory, spare = llama_cpp.llama_get_memory(self._ctx), self._capacity[0]
            if key != self._prefix:
                llama_cpp.llama_memory_seq_rm(memory, spare, -1, -1)
                self._decode(prefix, np.arange(shared, dtype=np.int32), np.full(shared, spare, dtype=np.int32),
                             np.zeros(shared, dtype=np.int8))
                self._prefix = key
                self.prefixes_computed += 1
            for row in range(rows):
                llama_cpp.llama_memory_seq_cp(memory, spare, row, -1, -1)
        tokens = [data[row, pads[row] + shared:] for row in range(rows)]
        positions = np.concatenate([np.arange(shared, shared + len(t), dtype=np.int32) for t in tokens])
        sequences = np.concatenate([np.full(len(t), row, dtype=np.int32) for row, t in enumerate(tokens)])
        outputs = np.concatenate([np.eye(1, len(t), len(t) - 1, dtype=np.int8)[0] for t in tokens])
        self._next = np.asarray([shared + len(t) for t in tokens], dtype=np.int32)
        return self._decode(np.concatenate(tokens), positions, sequences, outputs)

    def forget_prefix(self) -> None:
        """Drops the kept shared prefix: the next `prefill` computes it again (a new voice's first sentence)."""
        self._prefix = None

    def step(self, embeds: torch.Tensor) -> torch.Tensor:
        """One more token per sequence (`embeds`: (rows, D)); returns the new logits or hidden states."""
        rows = embeds.shape[0]
        hidden = self._decode(embeds.detach().float().cpu().numpy().reshape(rows, -1), self._next,
                              np.arange(rows, dtype=np.int32), np.ones(rows, dtype=np.int8))
        self._next = self._next + 1
        return hidden

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        """Every position's logits or hidden state for whole sequences (rows, L, D) -> (rows, L, V or D); the cache
        is emptied, the shared prefix's included."""
        rows, length, _ = embeds.shape
        self._context(rows, length + 1, rows * length)
        data = embeds.detach().float().cpu().numpy().reshape(rows * length, -1)
        positions = np.tile(np.arange(length, dtype=np.int32), rows)
        sequences = np.repeat(np.arange(rows, dtype=np.int32), length)
        hidden = self._decode(data, positions, sequences, np.ones(rows * length, dtype=np.int8))
        return hidden.reshape(rows, length, -1)


def engine_t3(t3, mode: str, threads: int | None = None, weights: str | None = None):
    """A copy of T3 whose backbone runs on llama.cpp at `mode`'s weight type (`ENGINE_MODES`; `weights` overrides
    it, e.g. 'f32' to check the engine against PyTorch). The GGUF is written on first use and kept (`cache_dir()`);
    LoRA adapters (the active one) are folded in first."""
    import copy

    from .gguf import write_t3_gguf

    if not available():
        raise missing_extra(f"mode={mode!r}")
    fast = copy.deepcopy(t3).merge_and_unload() if hasattr(t3, "merge_and_unload") else t3
    weights = weights or ENGINE_MODES[mode]
    path = cache_dir() / "gguf" / f"t3-{weights_key(fast)}-{weights}.gguf"
    if not path.exists():
        write_t3_gguf(fast, path, weights)
    # a shallow copy shares the upstream modules (embeddings, speech head, conditioning); only the backbone differs
    engine = module_copy_with(fast, tfmr=None)
    object.__setattr__(engine, "engine", LlamaCppBackbone(path, fast.tfmr.config, threads, logits=True))
    return engine
