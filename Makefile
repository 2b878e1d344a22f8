# Everything a newcomer needs, from a fresh clone, with no cloud account:
#   make plan STACK=prod    set up, then show what the prod stack would create (offline, mocked)
#   make test               set up, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STACK  ?= prod

.PHONY: setup plan test lint format bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

plan: setup
	$(PY) -m offline.plan $(STACK)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup
	$(PY) scripts/benchmark.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
