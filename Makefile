# The two quick-start commands, `make demo` and `make test`, work on a fresh machine.
# torch is pinned first: the local CPU build satisfies the package's torch range, so pip
# never downloads a multi-GB CUDA build.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install demo test test-all lint bench

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"

demo: install
	$(PYTHON) -m pfn.cli predict --train pfn/data/example_train.csv \
		--test pfn/data/example_test.csv --target target --out predictions.csv
	@head -5 predictions.csv

test: install
	$(PYTHON) -m pytest -q

test-all: install
	$(PYTHON) -m pytest -q -m "slow or not slow"

lint:
	$(PYTHON) -m ruff check .
