# Two commands matter: `make demo` (the template end to end on a synthetic dataset) and
# `make test` (the whole suite). Both create .venv and install requirements-dev.txt first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements-dev.txt | cut -d' ' -f1)

.PHONY: demo test lint bench bids-examples upstream clean

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

# Speed, memory and bytes against the alternatives (each prints a table and its targets).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_build
	$(BIN)/python -m benchmarks.bench_load
	$(BIN)/python -m benchmarks.bench_republish
	$(BIN)/python -m benchmarks.bench_index

# The newcomer path on every bids-examples dataset with NIfTI files (BIDS_EXAMPLES=folder).
bids-examples: $(STAMP)
	$(BIN)/python -m benchmarks.bids_examples --jobs 2

# datasets' own tests, before and after the patches in upstream/ (downloads the sdist).
upstream: $(STAMP)
	PYTHON=$(abspath $(BIN)/python) bash upstream/check.sh

clean:
	rm -rf demo-output .pytest_cache
