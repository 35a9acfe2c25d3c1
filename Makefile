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
PREFECT_PORT ?= 4200
LOCAL_API := http://127.0.0.1:$(PREFECT_PORT)/api
export TRANSFORMERS_OFFLINE := 1

.PHONY: install data run test bench lint serve deploy stop

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
	$(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadscope --no-loadscope-reorder

bench: data
	$(BIN)/python bench/bench_engine.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

serve deploy stop: export PREFECT_API_URL := $(LOCAL_API)

# A local Prefect server on loopback, the work pool, the deployments of prefect.yaml and a worker.
# The server is not started with `--background`: that one logs into pipes nobody reads once the
# command exits, and died under load in a test; this one logs to server.log.
serve: data deploy

deploy: install
	@mkdir -p $(PREFECT_HOME)
	nohup $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) > $(PREFECT_HOME)/server.log 2>&1 & echo $$! > $(PREFECT_HOME)/server.pid
	@for i in $$(seq 1 60); do $(BIN)/python -c "import urllib.request; urllib.request.urlopen('$(LOCAL_API)/health')" 2>/dev/null && break; sleep 1; done
	$(BIN)/prefect work-pool create labgap-local --type process --overwrite
	$(BIN)/prefect --no-prompt deploy --all
	nohup $(BIN)/prefect worker start --pool labgap-local --limit 1 > $(PREFECT_HOME)/worker.log 2>&1 & echo $$! > $(PREFECT_HOME)/worker.pid
	@echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)  (logs: $(PREFECT_HOME)/server.log, worker.log)"

stop:
	-@if [ -f $(PREFECT_HOME)/worker.pid ]; then \
		pid=$$(cat $(PREFECT_HOME)/worker.pid); kill $$pid 2>/dev/null; \
		for i in $$(seq 1 20); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
		kill -9 $$pid 2>/dev/null; rm -f $(PREFECT_HOME)/worker.pid; echo "worker stopped"; fi
	-@if [ -f $(PREFECT_HOME)/server.pid ]; then \
		pid=$$(cat $(PREFECT_HOME)/server.pid); kill $$pid 2>/dev/null; \
		for i in $$(seq 1 40); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
		kill -9 $$pid 2>/dev/null; rm -f $(PREFECT_HOME)/server.pid; echo "server stopped"; fi
