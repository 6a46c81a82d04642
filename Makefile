# Two entry points: `make demo` and `make test`. Each builds .venv/ if missing.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test bench clean

$(BIN)/polytask: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(BIN)/polytask
	$(BIN)/polytask compare examples/mnist-to-digits.yaml --out runs/mnist-to-digits --workers 2

test: $(BIN)/polytask
	$(BIN)/python -m pytest -n 2 -q

bench: $(BIN)/polytask
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/mtl_step.py

clean:
	rm -rf runs .pytest_cache
