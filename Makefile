# coldflow: `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Telemetry off: it trips "database is locked" on the embedded SQLite API.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup browser demo test lint format docs bench bench-archive bench-restore bench-vault bench-backup bench-batch bench-list ui ui-stop serve lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

demo: setup  ## archive the example plates end to end on a loopback S3 endpoint
	$(BIN)/python -m loopback.demo

test: setup browser  ## the whole suite, end-to-end tests included, in two processes
	$(BIN)/python -m pytest -n 2 --dist loadgroup

browser:  ## Debian's chromium for the UI test (needs root and apt-get; skipped otherwise)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: the UI test will be skipped"; fi; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: setup  ## the documentation site from docs/ (MkDocs Material, strict: a broken link fails) into site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: bench-archive bench-restore bench-vault bench-backup bench-batch bench-list  ## every benchmark (minutes; figures in bench/results/)

bench-archive: setup  ## archive_plates against the shell pipeline on the same plate, then a plate of 20,000 tiles
	$(BIN)/python -m bench.archive_bench $(BENCH_ARGS)
	$(BIN)/python -m bench.archive_bench --mib 100 --small-objects 20000 --runs 1 --parallel "" \
		--dilation 40 --raw-get-threads 160 --no-baseline

bench-list: setup  ## a 100,000-key prefix: serial paginator against the parallel listing; a 1,000,000-key dry run
	$(BIN)/python -m bench.list_bench $(BENCH_ARGS)
	$(BIN)/python -m bench.list_memory

bench-restore: setup  ## restore_prefix against the seed script and rclone
	$(BIN)/python -m bench.restore_bench $(BENCH_ARGS)

bench-vault: setup  ## thaw_vault_archives against get_job_output + put_object
	$(BIN)/python -m bench.vault_bench $(BENCH_ARGS)

bench-backup: setup  ## backup_bucket against aws s3 sync and rclone sync
	$(BIN)/python -m bench.backup_bench $(BENCH_ARGS)

bench-batch: setup  ## bulk_restore (Batch Operations) against restore_prefix, 50,000 objects
	$(BIN)/python -m bench.batch_bench $(BENCH_ARGS)

ui: setup  ## a Prefect server on 127.0.0.1, the work pool, all deployments, a worker
	$(BIN)/python -m deployments.ui

ui-stop:
	$(BIN)/python -m deployments.ui --stop

serve: setup  ## every flow served from one process (no work pool needed)
	$(BIN)/python -m deployments.serve

lock:  ## re-resolve the pinned versions into requirements.lock
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet '.[dev]'
	(echo '# Exact versions CI and `make` install (pip install -c requirements.lock). Regenerate with `make lock`.'; \
	 .lockvenv/bin/pip freeze --exclude coldflow) > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
