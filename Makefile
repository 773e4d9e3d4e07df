# The two commands of the README: `make demo` (the whole chain on CPU) and
# `make test` (the test suite). Both create the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1
DEMO_DIR ?= demo_out

.PHONY: install test demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

test: install
	$(PY) -m pytest -n 2 --dist loadfile -q tests

demo: install
	$(PY) -m demo --out $(DEMO_DIR)

bench: install
	$(PY) -m benchmarks.overhead

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
