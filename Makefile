# The two commands of the README: `make demo` runs the pipeline on the embedded stack,
# `make test` runs the test suite against real embedded services. Both build .venv on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PIP_FLAGS ?= --quiet --disable-pip-version-check
SHELL  := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: install system-deps demo services test test-fast bench lint audit clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $$(infra/find-python.sh) -m venv $(VENV)
	@echo "installing into $(VENV) with $$($(PY) --version)…"
	@$(PY) -m pip install $(PIP_FLAGS) --upgrade "pip>=24" 2>&1 | { grep -v "^WARNING: Location" || true; }
	@$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]' 2>&1 | { grep -v "^WARNING: Location" || true; }
	@$(PY) -c "import streams, schemas, connectors, training, models, datasets, xgboost, faust"
	@touch $(STAMP)

demo: install
	@infra/system-deps.sh demo
	$(VENV)/bin/evtwin up

services: install
	$(VENV)/bin/evtwin services

# System tools the suite uses (promtool, chromium, mosquitto): installed with apt-get as root, else
# one line says how.
system-deps:
	@infra/system-deps.sh

test: install system-deps
	$(PY) -m pytest

# The unit tests only (tests/unit: no embedded service, no pipeline process): under a minute.
test-fast: install
	$(PY) -m pytest -m unit -q

bench: install
	$(VENV)/bin/evtwin bench physics

lint: install
	$(VENV)/bin/ruff check streams schemas connectors training models datasets tests
	$(VENV)/bin/mypy streams schemas connectors models training datasets

# Known vulnerabilities of the installed dependencies (pip-audit asks PyPI's per-release data, so it
# needs the network: not part of `make test`). --strict: a package it could not check is a failure.
audit: install
	$(VENV)/bin/pip-audit --strict --progress-spinner off --skip-editable

clean:
	rm -rf $(VENV) .evtwin .pytest_cache
