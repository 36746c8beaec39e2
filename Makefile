# protonpath: the two commands of the README are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup demo test test-fast test-postgres lint messages bench

setup:
	@bash scripts/setup.sh

## Run the system with demo data (SQLite and files under var/). Outside DEBUG the settings need a
## SECRET_KEY: the demo makes one for this machine in var/ (unless the environment has one).
DEMO_ENV = SECRET_KEY="$${SECRET_KEY:-$$(cat var/demo-secret-key)}"
demo: setup
	@mkdir -p var && [ -s var/demo-secret-key ] || $(PY) -c "import secrets; print(secrets.token_urlsafe(50))" > var/demo-secret-key
	$(DEMO_ENV) $(PY) manage.py migrate --no-input -v 0
	$(DEMO_ENV) $(PY) manage.py seed_demo
	$(DEMO_ENV) $(PY) manage.py sweep_plans -v 0
	@echo "Open http://$(HOST):$(PORT)/ — demo accounts are listed above (password: demo-password-2026)."
	@# a task worker (plan calculations, e-mails) beside the web server, stopped with it
	$(DEMO_ENV) $(PY) manage.py db_worker --no-reload -v 0 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(DEMO_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

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
	cd src/protonpath && DEBUG=1 ../../$(PY) ../../manage.py makemessages -l fr --ignore=.venv && DEBUG=1 ../../$(PY) ../../manage.py compilemessages

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
