# Two commands do all set-up on a fresh machine:
#   make demo   installs into .venv and runs the offline demo (no downloads, no GPU)
#   make test   installs into .venv and runs lint (ruff, mypy) + the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PINS)
	$(BIN)/pip install -q -e ".[fvd,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ctbench demo --out demo-out

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_msssim.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) demo-out
