# DCP Portal. `make run` serves the portal at http://127.0.0.1:8000; `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
CHROMIUM ?= /usr/bin/chromium
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_SERVICE_URL ?= redis://127.0.0.1:6379/0
PYTEST_ARGS ?=
PYTEST_REPORT ?= --durations=10  # the slowest tests, so that the suite stays fast

# The first Python >= 3.12 on PATH, else the newest in pyenv's versions.
PYTHON_FOR_VENV := $(shell \
  for c in python3.14 python3.13 python3.12 python3; do \
    p=$$(command -v $$c 2>/dev/null) && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; exit; }; \
  done; \
  for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
    $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; exit; }; \
  done)

.PHONY: run test lint bench bench-packages venv frontend chromium system-packages migrate clean protocol-js

$(VENV)/.created:
	@test -n "$(PYTHON_FOR_VENV)" || { echo "No Python 3.12+ found on PATH or in pyenv's versions: install one." >&2; exit 1; }
	@echo "Building $(VENV) from $(PYTHON_FOR_VENV)"
	$(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,dev,gpu]"
	@touch $@

venv: $(VENV)/.installed

frontend/node_modules/.package-lock.json: frontend/package-lock.json
	npm ci --prefix frontend --no-audit --no-fund --loglevel=error
	@touch $@

worker_static/vendor/.built: frontend/node_modules/.package-lock.json frontend/build.mjs
	node frontend/build.mjs
	@touch $@

frontend: worker_static/vendor/.built

# Debian's packages the tests use, installed when missing (one apt-get for both): chromium for
# the browser tests, mesa-vulkan-drivers for lavapipe, the software GPU that wgpu-py uses when
# local_exec runs a GPU work function on a machine without one.
system-packages:
	@missing=""; \
	test -x $(CHROMIUM) || missing="chromium"; \
	ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || missing="$$missing mesa-vulkan-drivers"; \
	if [ -n "$$missing" ]; then echo "Installing Debian's$${missing:+ }$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; fi

chromium: system-packages

migrate: venv
	@mkdir -p var
	$(PY) manage.py migrate --noinput

run: venv frontend migrate
	@echo "DCP Portal at http://$(HOST):$(PORT)/ (verification emails are printed here)"
	$(PY) -m portal.serve -b $(HOST) -p $(PORT)

# The whole suite on the embedded defaults (SQLite, in-memory channel layer): first the tests
# without a browser in TEST_PROCESSES processes, then the browser tests, also in TEST_PROCESSES
# processes of their own (a process that has driven a browser keeps an event loop in its
# thread, which the ORM's synchronous tests refuse; each browser process has its own portal).
# Then the database and channel-layer tests again on PostgreSQL and Redis when those services
# answer, in TEST_PROCESSES processes with a test database and a Redis database each (not the
# browser tests, and not tests/dcp: the client never touches either). pytest's exit status 5, "no tests collected", is fine when PYTEST_ARGS names only
# tests of another pass.
TEST_PROCESSES ?= $(shell nproc 2>/dev/null || echo 2)
test: venv frontend chromium
	$(PY) -m pytest -m "not e2e" -n $(TEST_PROCESSES) $(PYTEST_REPORT) $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(PY) -m pytest -m e2e -n $(TEST_PROCESSES) $(PYTEST_REPORT) $(PYTEST_ARGS) || [ $$? -eq 5 ]
	@if $(PY) -m tests.services_up "$(PG_URL)" "$(REDIS_SERVICE_URL)"; then \
	  echo "== again on PostgreSQL and Redis =="; \
	  DATABASE_URL="$(PG_URL)" REDIS_URL="$(REDIS_SERVICE_URL)" $(PY) -m pytest -m "not e2e" --ignore=tests/dcp -n $(TEST_PROCESSES) $(PYTEST_REPORT) $(PYTEST_ARGS) \
	    || [ $$? -eq 5 ]; \
	else echo "PostgreSQL or Redis is not answering: their runs were skipped."; fi

# worker_static/protocol-constants.js is rendered from dcp/protocol (a test checks it is current).
protocol-js: venv
	$(PY) -m dcp.protocol.javascript > worker_static/protocol-constants.js

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy portal dcp

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test,dev,gpu,bench]"
	$(PY) -m pip install --quiet ray || echo "Ray does not install here: bench.throughput leaves it out"
	@touch $@

# HAProxy (Debian's) balances bench.scale's daphne processes.
bench-packages:
	@command -v haproxy >/dev/null || { echo "Installing Debian's haproxy"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null; }

# Each benchmark prints one JSON line of figures (those on both backends, one per backend).
bench: venv frontend chromium bench-packages $(VENV)/.bench-installed
	$(PY) -m bench.throughput
	$(PY) -m bench.latency
	$(PY) -m bench.efficiency
	$(PY) -m bench.first_result
	$(PY) -m bench.browser
	$(PY) -m bench.switch
	$(PY) -m bench.soak
	$(PY) -m bench.gpu
	$(PY) -m bench.scale

clean:
	rm -rf $(VENV) frontend/node_modules worker_static/vendor
