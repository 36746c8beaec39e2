# protonpath: the two commands of the README are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup demo test test-fast test-postgres lint messages bench

setup:
	@bash scripts/setup.sh

## Run the system with demo data (SQLite and files under var/).
demo: setup
	$(PY) manage.py migrate --no-input -v 0
	$(PY) manage.py seed_demo
	@echo "Open http://$(HOST):$(PORT)/ — demo accounts are listed above (password: demo-password-2026)."
	$(PY) manage.py runserver $(HOST):$(PORT)

## Lint (ruff, import contracts), then run every test (unit, integration, DICOM peers, browser) on SQLite;
## with DATABASE_URL set, on that server.
test: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-postgres: setup
	DATABASE_URL=$${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/protonpath} $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports --no-cache

messages:
	cd src/protonpath && ../../$(PY) ../../manage.py makemessages -l fr --ignore=.venv && ../../$(PY) ../../manage.py compilemessages

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
