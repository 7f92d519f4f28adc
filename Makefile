# Two commands do everything on a fresh Debian/Ubuntu machine (root or sudo, CPU or CUDA):
#   make demo   installs, then runs the whole job offline on the tiny model and a generated Spanish corpus
#   make test   installs, then runs the test suite
# Both are idempotent: the system packages and the virtual environment are installed once and reused.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := runs/demo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# chromium: the Space's browser tests drive it headless through Playwright.
SYSTEM_PACKAGES := ffmpeg espeak-ng sox libsndfile1 chromium
# Nothing here needs the Hub: the demo and tests use local stand-ins (the tokenizer would otherwise retry ~28 s).
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

PORT ?= 7860

.PHONY: install system demo test test-fast docs space check-real lock benchmark-prepare benchmark-training benchmark-synthesis benchmark-quantized clean-demo

install: system $(STAMP)

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# llama-cpp-python (with gguf, the cpu-fast extra: the lock holds both) is built from source (a few minutes on 2
# cores) for the CPU it runs on, without its multimodal library, which nothing here uses. -fno-dse: GCC 12's
# dead-store elimination drops the AMX tile configuration that ggml's AMX matrix product loads, which then crashes on
# a CPU with AMX (see synthesis/cpu_fast/engine.py). GGML_OPENMP=OFF: llama.cpp's calls run on a thread of their
# own, and an OpenMP team of its own there contends with PyTorch's on two cores (17 against 29 tokens/s at full
# size); ggml's own threads do not.
LLAMA_CPP_BUILD := CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DCMAKE_C_FLAGS=-fno-dse \
	-DCMAKE_CXX_FLAGS=-fno-dse" \
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc)
# The lock file is installed with --no-deps: it is the complete, resolved set (see requirements.in for why).
# llama-cpp-python first and past pip's wheel cache: a wheel cached from an earlier build (other flags, another CPU)
# would otherwise be reused as it is, whatever CMAKE_ARGS say.
$(STAMP): requirements.lock setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(LLAMA_CPP_BUILD) $(PY) -m pip install -q --no-deps --no-cache-dir --force-reinstall \
	    $$(grep -i '^llama[-_]cpp[-_]python==' requirements.lock)
	$(PY) -m pip install -q --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# `chatterbox-latam demo` (chatterbox_latam/cli/demo.py) prints and runs each step: the tiny checkpoint and the espeak-ng
# corpus, segment, prepare, train (through accelerate launch, as on a GPU machine), evaluate, merge, generate.
demo: install
	$(OFFLINE) $(VENV)/bin/chatterbox-latam demo --output_dir $(DEMO) --accelerate_config accelerate_configs/cpu.yaml

# TEST_WORKERS pytest-xdist processes, each test file whole on one of them (its module fixtures built once); each
# worker peaks near 9 GB of memory, so the default stays at 2 whatever the core count.
TEST_WORKERS ?= 2
test: install
	$(OFFLINE) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25 tests

# The same without the whole-pipeline tests (marker `pipeline`) and the slow ones (`slow`: 20 s or more each): every
# stage on its own, in a fraction of the time.
test-fast: install
	$(OFFLINE) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=10 -m "not pipeline and not slow" tests

# The manual as a site (mkdocs-material) in site/, which git ignores. --strict: a broken link or anchor, a page left out
# of the nav, a config field without a help text or an API name that does not import fails the build.
# NO_MKDOCS_2_WARNING: mkdocs-material's banner about mkdocs 2 (requirements.in keeps mkdocs below 2).
docs: install
	$(OFFLINE) NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Do training and inference read the real weights right? Downloads BASE (v2, v3, es-mx-latam, es-es) and checks
# decoding against upstream, the pretrained loss, five LoRA steps, a merge and one sentence; needs the Hub (and is
# quickest on a GPU). DATA=DIR checks on your own clips (folder layout) instead of the base's own speech.
BASE ?= v2
check-real: install
	$(VENV)/bin/chatterbox-latam check-real --base $(BASE) $(if $(DATA),--data $(DATA))

# The Gradio Space and its REST API on the demo's merged model: http://127.0.0.1:$(PORT)/ (API docs at /docs).
space: install
	@test -f $(DEMO)/merged/config.json || { echo "No merged demo model in $(DEMO)/merged: run 'make demo' first."; exit 1; }
	@echo "serving $(DEMO)/merged on http://127.0.0.1:$(PORT)/"
	$(OFFLINE) CHATTERBOX_LATAM_MODEL=$(DEMO)/merged GRADIO_SERVER_PORT=$(PORT) $(PY) space/app.py

benchmark-prepare: install
	$(OFFLINE) $(PY) benchmarks/prepare.py

benchmark-training: demo
	$(OFFLINE) $(PY) benchmarks/training.py

# Upstream T3 decoding against the fast modes at full size (random weights, ~3 GB of RAM), S3Gen timed on its own.
benchmark-synthesis: install
	$(OFFLINE) $(PY) benchmarks/synthesis.py --full-size

# The project's weight-only kernels against torchao's configs, one decode step's Linear layers at full size.
benchmark-quantized: install
	$(OFFLINE) $(PY) benchmarks/quantized_linear.py

# Resolve requirements.in again and rewrite the lock (needs the package index); the two --no-deps packages are
# explained in requirements.in.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	$(LLAMA_CPP_BUILD) .lock-venv/bin/pip install -q -r requirements.in
	.lock-venv/bin/pip install -q --no-deps chatterbox-tts==0.1.7 resemblyzer==0.1.4
	(head -2 requirements.lock; .lock-venv/bin/pip freeze --all --exclude-editable | grep -v '^pip==') > requirements.lock.new
	! grep -n ' @ file:' requirements.lock.new || { echo 'a package resolved to a local file; pin it from the index'; exit 1; }
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean-demo:
	rm -rf $(DEMO)
