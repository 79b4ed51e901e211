# vidgate: `make serve` to run it, `make test` to check it. Both set up .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell sha1sum pyproject.toml | cut -c1-12)
STAMP := $(VENV)/.installed-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
PGDIR := /tmp/vidgate-test-pg-$(shell id -u)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: serve test lint bench soak install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "vidgate needs Python 3.11 or newer (set PYTHON=...)")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(filter-out $@,$(wildcard $(VENV)/.installed-[0-9a-f]*))
	touch $@

## The tests also need the diffusers extra (torch's CPU build, pinned): only `make test`
## and `make lint` install it, not `make serve`.
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,diffusers]'
	rm -f $(filter-out $@,$(wildcard $(VENV)/.installed-test-*))
	touch $@

install: $(STAMP)

## Start the server on the embedded default (SQLite + local files + in-process worker).
serve: $(STAMP)
	$(BIN)/vidgate serve $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## Lint, type-check and run the whole suite against real SQLite and PostgreSQL (and the
## dashboard's browser test in Debian's chromium, installed when missing): in
## TEST_WORKERS parallel processes (one per core, 2 to 4), then the tests marked `serial`
## alone. pytest's exit status 5 (nothing collected, e.g. PYTEST_ARGS naming one file) is
## not a failure.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; [ $$n -lt 2 ] && n=2; echo $$n)
test: lint
	@scripts/chromium-for-tests.sh >/dev/null
	@url=$$(scripts/postgres-for-tests.sh start $(PGDIR)) || exit 1; \
	trap 'scripts/postgres-for-tests.sh stop $(PGDIR)' EXIT; \
	export VIDGATE_TEST_DATABASE_URL=$$url; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m 'not serial' $(PYTEST_ARGS) || [ $$? -eq 5 ] || exit 1; \
	$(BIN)/pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

## Benchmarks, each beside a baseline measured in the same run (see bench/); HTTP figures
## by wrk. Installs wrk and nginx if missing; writes docs/benchmarks.md. Under 10 minutes.
bench: $(STAMP)
	scripts/bench-tools.sh
	@url=$$(scripts/postgres-for-tests.sh start $(PGDIR)-bench) || exit 1; \
	trap 'scripts/postgres-for-tests.sh stop $(PGDIR)-bench' EXIT; \
	VIDGATE_BENCH_DATABASE_URL=$$url $(BIN)/python -m bench $(BENCH_ARGS)

## Soak: runs submitted and followed for SOAK_MINUTES on PostgreSQL while processes are
## restarted (SIGTERM and SIGKILL); writes docs/soak.md, fails if a run is lost or doubled.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	@url=$$(scripts/postgres-for-tests.sh start $(PGDIR)-soak) || exit 1; \
	trap 'scripts/postgres-for-tests.sh stop $(PGDIR)-soak' EXIT; \
	VIDGATE_BENCH_DATABASE_URL=$$url $(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
