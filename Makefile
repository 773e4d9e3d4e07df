# The two commands of the README: `make demo` (the whole chain on CPU) and
# `make test` (the whole test suite, what .ci/run calls). Both create the
# virtual environment first. `make test-fast` is the quick tier (tests not
# marked slow). `make bench` / `make figures` write measured figures into
# docs/benchmarks/ (run them on a quiet machine). `make container-test`
# builds the images with podman or docker and tests the model-server
# container (docker/build_and_test.sh; CONTAINER_ARGS=--keep keeps the
# images, --docs FILE writes the times and sizes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1
DEMO_DIR ?= demo_out
FIGURES ?= docs/benchmarks

.PHONY: install lint format test test-fast demo bench figures container-test clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

# ruff (configured in pyproject.toml): the linter and the formatter's check.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install
	$(PY) -m pytest -n 2 --dist loadfile -q --durations=15 tests

test-fast: install
	$(PY) -m pytest -m "not slow" -n 2 --dist loadfile -q tests

demo: install
	$(PY) -m demo --out $(DEMO_DIR)

bench: install
	$(PY) -m benchmarks.overhead --docs $(FIGURES)/overhead.md

figures: bench
	$(PY) -m benchmarks.overhead --paper-table --docs $(FIGURES)/paper_table1.md
	$(PY) -m benchmarks.train_step --docs $(FIGURES)/train_step.md
	$(PY) -m benchmarks.demo_time --docs $(FIGURES)/demo.md
	$(PY) -m benchmarks.input_pipeline --rounds 5 --docs $(FIGURES)/input_pipeline.md
	$(PY) -m benchmarks.serving_load --clients 16 --requests 100 --docs $(FIGURES)/serving_load.md

container-test: install
	PYTHON=$(PY) docker/build_and_test.sh $(CONTAINER_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
