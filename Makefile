# interir-bench: the README's two commands.
#   make repro   install into .venv, run the DVC pipeline on the params profile (default smoke)
#   make test    install into .venv, run the fast test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin
PYTHON ?= python3

# Offline and telemetry switches, set by the project itself (see README, "Offline use").
export HF_HUB_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg
# Sleep, don't spin, in idle OpenMP threads: a busy CPU otherwise slows torch 10-30x.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install repro small-run test test-all lint bench ui clean

# Reinstall when the dependency list or the lock changes. constraints.txt pins every
# package (pip freeze of a working install); the machine's own pip config may add caps.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade-strategy only-if-needed -c constraints.txt -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# `interir-bench repro` = `dvc repro` with the independent train/evaluate stages run side by side
# (JOBS=N or INTERIR_JOBS=N overrides the job count; see README "Running the pipeline").
repro: install
	PATH="$(BIN):$$PATH" $(BIN)/interir-bench repro $(if $(JOBS),--jobs $(JOBS),) && \
	echo "Report: $(abspath reports/index.html); runs: 'make ui' (MLflow UI on http://127.0.0.1:5000)"

test: install
	PATH="$(BIN):$$PATH" $(PY) -m pytest -q

test-all: install
	PATH="$(BIN):$$PATH" $(PY) -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check interir baselines pipelines tests benchmarks

# CPU speed benchmarks; each writes benchmarks/results/<name>.json naming the machine (bench_eval alone: ~6 min on 2 cores).
bench: install
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_xconv.py

# The decisive CPU run (docs/small-run/README.md): its params, the parallel pipeline, its results into git.
small-run: install
	cp docs/small-run/params.yaml params.yaml
	@start=$$(date +%s); PATH="$(BIN):$$PATH" $(BIN)/interir-bench repro && \
	PATH="$(BIN):$$PATH" $(BIN)/interir-bench export-run docs/small-run --wall-s $$(( $$(date +%s) - start ))

ui: install
	$(BIN)/interir-bench ui

clean:
	rm -rf results checkpoints reports/index.html reports/tables reports/figures datasets/mdir mlflow.db mlruns
