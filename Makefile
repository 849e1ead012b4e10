# Two commands matter: `make demo` (the template end to end on a synthetic dataset) and
# `make test` (the whole suite). Both create .venv and install requirements-dev.txt first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements-dev.txt | cut -d' ' -f1)

.PHONY: demo test lint bench clean

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m examples.demo --out demo-output

test: $(STAMP) lint
	$(BIN)/python -m pytest

# Lint everything; type-check the vendored core (what every generated repo runs).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy "{{cookiecutter.dataset_slug}}/bids_hf"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_build
	$(BIN)/python -m benchmarks.bench_index

clean:
	rm -rf demo-output .pytest_cache
