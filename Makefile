# The two quick-start commands, `make demo` and `make test`, work on a fresh machine.
# `make install` installs the package with its train, ray and dev extras (Ray: the local
# cluster of tests/test_distributed.py, from PyPI, no Java). torch is pinned first:
# the CPU build satisfies the train extra's torch range, so pip never downloads a
# multi-GB CUDA build. (The plain `pip install .` predicts without torch.)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
DEMO := predict --train pfn/data/example_train.csv --test pfn/data/example_test.csv \
	--target target

.PHONY: install demo test test-all lint

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"

# Predictions go to a temporary file, printed and removed: the checkout stays clean.
demo: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m pfn.cli $(DEMO) --out "$$tmp/predictions.csv" && \
	head -5 "$$tmp/predictions.csv"

test: install
	$(PYTHON) -m pytest -q

test-all: install
	$(PYTHON) -m pytest -q -m "slow or not slow"

lint:
	$(PYTHON) -m ruff check .
