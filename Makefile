# TraceLedger: `make run` and `make test` are the two commands you need.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PY

.PHONY: run test lint format bench soak schemathesis screenshots services venv migrate clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

services: venv
	@scripts/services.sh

migrate: services
	$(PY) manage.py migrate --noinput

## run: web on :8000, a Celery worker and beat in the foreground until Ctrl-C
run: migrate
	@scripts/run.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## test: lint, then the whole suite against the real PostgreSQL, Redis and RabbitMQ
test: services lint
	@scripts/test-setup.sh
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: services
	$(PY) -m bench $(BENCH_ARGS)

soak: services
	$(PY) -m bench.soak $(SOAK_ARGS)

## schemathesis: fuzz the whole OpenAPI schema with an ingest+read API key; fails on any 5xx
schemathesis: services
	$(PY) -m bench.schemathesis_run $(SCHEMATHESIS_ARGS)

## screenshots: the admin browser tests, saving docs/screenshots/*.png for the README
screenshots: services
	@scripts/test-setup.sh
	TRACELEDGER_SCREENSHOTS=1 $(VENV)/bin/pytest -m browser $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache var/celerybeat-schedule*
