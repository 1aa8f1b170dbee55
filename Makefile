# modelminder -- the project's verbs. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: help install demo test bench reliability check clean

help: ## Show this help.
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,torch]'
	@# The browser tests drive Debian's chromium; without it they are skipped (and say so).
	@test -x /usr/bin/chromium || (command -v apt-get >/dev/null && \
		(apt-get install -y -qq chromium >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null))) || \
		echo "note: Debian's chromium is not installed; browser tests will be skipped"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP) ## Create/refresh the virtual environment with everything needed.

demo: $(STAMP) ## Simulate, train under the guard, serve live, review, monitor, backtest the retraining loop.
	$(BIN)/minder demo --dir demo-run

test: $(STAMP) ## Run the whole test suite (unit, property, CLI, doctests).
	$(BIN)/python -m pytest -q

bench: $(STAMP) ## Run every benchmark (5M simulated events; ratios against same-run baselines).
	@# HTTP benchmarks drive the server with wrk (Debian package), never a Python client.
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && \
		(apt-get install -y -qq wrk >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null))) || \
		echo "note: wrk is not installed (apt-get install wrk); the HTTP benchmarks will say so"
	@for b in benchmarks/[a-z]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

reliability: $(STAMP) ## kill -9 serve/ingest and a 10-minute soak (~25 min; docs/reliability.md).
	@for s in reliability/[a-z]*.py; do echo "== $$s"; $(BIN)/python $$s || exit 1; done

check: $(STAMP) ## Lint and type-check (ruff + mypy --strict).
	$(BIN)/ruff check src tests benchmarks reliability
	$(BIN)/ruff format --check src tests benchmarks reliability
	$(BIN)/mypy

clean: ## Remove the virtual environment and demo output.
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache
