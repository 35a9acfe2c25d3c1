# The two set-up commands: `make run` (the main job) and `make test` (the whole suite).
# Each creates or reuses .venv, installs the project, fetches and verifies its data, then runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

export LABGAP_DATA_DIR ?= $(CURDIR)/data
export PREFECT_HOME ?= $(CURDIR)/data/prefect
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install data run test bench lint

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(INSTALLED)

install: $(INSTALLED)

data: install
	$(BIN)/labgap data pull

run: data
	$(BIN)/labgap run --profile default

test: install
	$(BIN)/python -m pytest -q

bench: data
	$(BIN)/python bench/bench_engine.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
