"""The CPU-speed machinery, in a room of its own with its own extra (`pip install chatterbox-es-latam[cpu-fast]`):
T3's backbone on llama.cpp (`engine`: the `llamacpp-q4_0` / `llamacpp-q8_0` modes), T3 written as a GGUF for it
(`gguf`: those modes and `training/merge.py --gguf`), and the quantised Linear layers of the `int8-wo` / `int4-wo`
modes and of `bf16` on a CPU that only emulates it (`quantized`). `synthesis.precision.t3_for_mode` puts them in
for the mode asked for.

The extra is llama-cpp-python and gguf, which only `engine` and `gguf` use; the quantised layers need PyTorch
alone. A GPU user leaves the extra out: no module imports llama-cpp-python or gguf at import time, `auto` leaves
the llama.cpp modes out where they cannot run, and a llama.cpp mode or a GGUF asked for by name raises
`missing_extra`'s error, which says what to install.
"""

INSTALL = "pip install chatterbox-es-latam[cpu-fast]"


def missing_extra(what: str) -> ImportError:
    """The error for `what` (e.g. "mode='llamacpp-q4_0'") asked for without the cpu-fast extra installed."""
    return ImportError(f"{what} needs the cpu-fast extra (llama-cpp-python and gguf): `{INSTALL}` (`make install` "
                       "builds llama-cpp-python from source for this CPU).")
