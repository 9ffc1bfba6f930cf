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

# The suite starts hundreds of Python processes (the e2e tests drive the console script and
# servers). Where PYTHONDONTWRITEBYTECODE is set (as on the CI machine) each one compiled every
# module it imported from source, and pytest re-rewrote every test module: the tests keep that
# bytecode in the venv instead (outside the source tree), written once, read by every process.
TEST_ENV := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache

# Two workers (pytest-xdist), each taking whole test files (module fixtures stay in one
# process): every test has its own DuckDB file, PostgreSQL schema, Redis prefix, NATS stream and
# port 0, so they run side by side — 7.6 min against 19 min serially on the 2-core CI machine.
# Override with `make test PYTEST_WORKERS=0` for one process.
PYTEST_WORKERS ?= 2

## Lint, type-check and run the whole test suite.
test: $(VENV)/.installed-test lint typecheck
	$(TEST_ENV) $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

unit: $(VENV)/.installed-test
	$(TEST_ENV) $(PY) -m pytest -q tests/unit

## Performance goals: each script prints its table (see benchmarks/RESULTS.md).
bench: $(VENV)/.installed-test
	$(PY) benchmarks/world_load.py
	$(PY) benchmarks/file_import.py
	$(PY) benchmarks/tracking_throughput.py

clean:
	rm -rf $(VENV) personify-demo .pytest_cache .mypy_cache .ruff_cache
