# Every target bootstraps .venv itself: a fresh machine needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo up test faults fuzz lint format bench bench-sagas bench-submit bench-next-work bench-claims bench-timers bench-routing bench-metrics bench-traceability clean

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

# Parallel test workers (pytest-xdist), a whole module each: tests sharing a module's running stack
# stay on one worker. Three on two cores: the tests mostly wait on their processes and databases.
# Modules are handed out in the order tests/conftest.py sorts them (the longest first, from
# tests/durations.json), not by xdist's count of tests. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 3
PYTEST_ARGS  ?=
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder)

test: $(STAMP)  ## unit + integration + e2e tests (PostgreSQL too when WORKYARD_TEST_DATABASE_URL is set)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS) tests/faults tests/e2e tests/integration tests/unit tests/fuzz

# The fault matrix (tests/faults/matrix.py): each fault over FAULT_SAGAS sagas on the default
# settings, on SQLite and on a PostgreSQL cluster of its own; one table, and a last line saying how
# many faults held. make test runs a short version (tests/faults/test_matrix_*.py).
FAULT_SAGAS    ?= 200
FAULT_BACKENDS ?= sqlite,postgres
FAULT_NAMES    ?= all

faults: $(STAMP)  ## the fault matrix: kills, restarts, pauses, duplicates, garbage; one table
	$(BIN)/python -m tests.faults.matrix --sagas $(FAULT_SAGAS) --backends $(FAULT_BACKENDS) --faults $(FAULT_NAMES)

# Schemathesis over the whole OpenAPI, in process, on SQLite (and PostgreSQL when
# WORKYARD_TEST_DATABASE_URL is set). make test runs a bounded, derandomized version (a few examples
# per operation); this one is randomized, with WORKYARD_FUZZ_EXAMPLES examples per operation and
# mode. Both run every check (the rules OpenAPI cannot express: INEXPRESSIBLE in tests/fuzz/test_openapi.py).
WORKYARD_FUZZ_EXAMPLES ?= 50

fuzz: $(STAMP)  ## schemathesis over the whole API: no 5xx, responses and statuses as documented
	WORKYARD_FUZZ_EXAMPLES=$(WORKYARD_FUZZ_EXAMPLES) $(BIN)/python -m pytest $(PYTEST_ARGS) tests/fuzz

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The work-item benchmarks need a PostgreSQL: WORKYARD_DATABASE_URL, else the one CI machines run.
BENCH_PG ?= $(or $(WORKYARD_DATABASE_URL),postgresql+psycopg://postgres@127.0.0.1:5432/test)

bench: bench-sagas bench-submit bench-next-work bench-claims bench-timers bench-routing bench-metrics bench-traceability  ## every benchmark below (about 20 minutes)

bench-sagas: $(STAMP)  ## saga throughput of workyard (SQLite, PostgreSQL) against raw Celery chains
	WORKYARD_BENCH_DATABASE_URL='$(BENCH_PG)' $(BIN)/python bench/saga_throughput.py

bench-submit: $(STAMP)  ## submits over HTTP: 1 and 16 clients, single and batch, SQLite and PostgreSQL; API CPU per submit
	$(BIN)/python bench/submit.py --postgres '$(BENCH_PG)' --rounds 2

bench-next-work: $(STAMP)  ## next-work p50/p99 at 100k and 1M items (PostgreSQL), 100k (SQLite)
	$(BIN)/python bench/next_work.py --database-url '$(BENCH_PG)'
	$(BIN)/python bench/next_work.py --sqlite --sizes 100000

bench-claims: $(STAMP)  ## 50 concurrent claimers: claims/s and p99 (PostgreSQL, SQLite)
	$(BIN)/python bench/claims.py --database-url '$(BENCH_PG)'
	$(BIN)/python bench/claims.py --sqlite

bench-timers: $(STAMP)  ## timer fire lag at 1,000 due/s over 100k pending timers (PostgreSQL)
	$(BIN)/python bench/timers.py --database-url '$(BENCH_PG)'

bench-routing: $(STAMP)  ## routing decision p50/p99 over 1,000 registered agents and 200 rules (PostgreSQL)
	$(BIN)/python bench/routing.py --database-url '$(BENCH_PG)'

bench-metrics: $(STAMP)  ## /metrics scrape p50/p99 with 100,000 sagas and 100,000 items stored (PostgreSQL)
	$(BIN)/python bench/metrics_scrape.py --database-url '$(BENCH_PG)'

bench-traceability: $(STAMP)  ## a tenant's traceability validation over 1,000,000 items; the real-time check's p99 (PostgreSQL)
	$(BIN)/python bench/traceability.py --database-url '$(BENCH_PG)'

clean:
	rm -rf $(VENV) .workyard .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
