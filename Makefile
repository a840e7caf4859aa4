# coldflow: `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Telemetry off: it trips "database is locked" on the embedded SQLite API.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo test lint format bench lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

demo: setup  ## archive the example plates end to end on a loopback S3 endpoint
	$(BIN)/python -m loopback.demo

test: setup  ## the whole suite, end-to-end tests included
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup  ## archive benchmark against the shell baseline (minutes)
	$(BIN)/python -m bench.archive_bench $(BENCH_ARGS)

lock:  ## re-resolve the pinned versions into requirements.lock
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet '.[dev]'
	(echo '# Exact versions CI and `make` install (pip install -c requirements.lock). Regenerate with `make lock`.'; \
	 .lockvenv/bin/pip freeze --exclude coldflow) > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
