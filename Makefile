# Every routine command of the project. The README and .ci/run call these targets.

SHELL := /bin/bash
BOOTSTRAP_PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
VAR_DIR := $(or $(REGISTRY_VAR_DIR),var)
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: venv run test test-fast lint check clean bench backup restore

# The virtual environment; dependencies are reinstalled only when pyproject.toml changes.
venv: $(STAMP)

$(PY):
	$(BOOTSTRAP_PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The whole system on this machine: SQLite and Celery's filesystem broker under var/ unless
# DATABASE_URL / REDIS_URL are set. Web on http://127.0.0.1:$(PORT)/, one worker with beat (started again if it
# exits, by config.respawn in Procfile.local); Ctrl-C stops all.
# Today's reminders are queued, and sent (to var/mail/) once their site's sending hour has come, before the
# worker starts; beat sweeps again every 15 minutes.
run: venv
	mkdir -p $(VAR_DIR)/mail $(VAR_DIR)/celery/queue $(VAR_DIR)/celery/processed
	$(PY) manage.py migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py ensure_local_admin
	$(PY) manage.py send_reminders
	$(VENV)/bin/honcho -f Procfile.local start -p $(PORT)

# pytest's exit code; a run that collects no tests (exit code 5) fails too.
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The quick loop while working: every test but those marked `slow` (fuzzing, worker and server processes,
# the browser, the seeding of synthetic cohorts, anything over about 2 s), on one worker per core.
test-fast: venv
	$(PY) -m pytest -m "not slow" -n auto $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

check: venv
	mkdir -p $(VAR_DIR)
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

# The benchmark (docs/performance.md): needs DATABASE_URL=postgres://...; makes its own databases
# (msct_bench_run_<size>), prints one JSON object. BENCH_PATIENTS / BENCH_SMALL_PATIENTS set the sizes.
bench: venv
	$(PY) -m bench

# One archive of the database and the export files under $(BACKUP_DIR) (docs/operations.md, "Backup and restore"):
# pg_dump -Fc on PostgreSQL, SQLite's online backup otherwise (safe while `make run` runs).
BACKUP_DIR ?= $(VAR_DIR)/backups
backup: venv
	mkdir -p $(VAR_DIR)
	$(PY) manage.py backup --output-dir $(BACKUP_DIR)

# Restore FILE into an empty database (FORCE=1 replaces one that has tables); checksums are verified first.
restore: venv
	@test -n "$(FILE)" || { echo "usage: make restore FILE=var/backups/registry-backup-....tar [FORCE=1]"; exit 2; }
	mkdir -p $(VAR_DIR)
	$(PY) manage.py restore $(if $(FORCE),--force) $(FILE)

clean:
	rm -rf var
