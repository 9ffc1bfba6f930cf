# Personify — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test lint typecheck unit bench clean install

# Create the virtual environment and install the project (runtime extras). The venv's own pip
# (Python 3.11's) installs all of it: upgrading pip first cost 29 s at load 13 (2.5 CPU-s).
# Modules are byte-compiled when first imported, not all at install time (much of mypy,
# playwright and pyarrow never is).
PIP_INSTALL := $(PIP) install --quiet --no-compile

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[all]'
	touch $@

# Same, with the test tooling.
$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

## Build the synthetic e-commerce world, wire a project to it and run the main job.
demo: $(VENV)/.installed
	$(VENV)/bin/personify demo

## Lint, type-check and run the whole test suite.
test: $(VENV)/.installed-test lint typecheck
	$(PY) -m pytest -q

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

unit: $(VENV)/.installed-test
	$(PY) -m pytest -q tests/unit

## Performance goals: each script prints its table (see benchmarks/RESULTS.md).
bench: $(VENV)/.installed-test
	$(PY) benchmarks/world_load.py
	$(PY) benchmarks/file_import.py
	$(PY) benchmarks/tracking_throughput.py

clean:
	rm -rf $(VENV) personify-demo .pytest_cache .mypy_cache .ruff_cache
