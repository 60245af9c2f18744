# The two commands of the quick start: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup services demo test lint unit bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

services:
	bash scripts/ensure-services.sh

demo: setup services
	$(BIN)/python -m sandbox.demo

lint: setup
	$(BIN)/ruff check bot handlers sandbox tests benchmarks
	$(BIN)/ruff format --check bot handlers sandbox tests benchmarks
	$(BIN)/mypy

unit: setup services
	$(BIN)/pytest -q

test: lint unit

# Side by side in one run each, figures written into README.md: rollback time (about 9 min), then acks.
bench: setup services
	$(BIN)/python benchmarks/rollback.py --write-readme
	$(BIN)/python benchmarks/run.py --write-readme

clean:
	rm -rf $(VENV) demo-sandbox .pytest_cache .mypy_cache .ruff_cache *.egg-info
