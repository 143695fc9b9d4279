# Every target bootstraps .venv itself: a fresh machine needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo up test faults lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "workyard needs Python 3.11 or newer; set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv with workyard and the dev tools

demo: $(STAMP)  ## run the shop sagas on the embedded default, then stop everything
	$(BIN)/workyard demo

up: $(STAMP)  ## run the stack with the shop workers until Ctrl-C
	$(BIN)/workyard up --handlers examples.shop

test: $(STAMP)  ## unit + integration + e2e tests (PostgreSQL too when WORKYARD_TEST_DATABASE_URL is set)
	$(BIN)/python -m pytest tests/unit tests/integration tests/e2e tests/faults

faults: $(STAMP)  ## only the fault runs: orchestrator killed mid-stream
	$(BIN)/python -m pytest tests/faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## throughput of workyard against raw Celery chains
	$(BIN)/python bench/saga_throughput.py

clean:
	rm -rf $(VENV) .workyard .pytest_cache .mypy_cache .ruff_cache
