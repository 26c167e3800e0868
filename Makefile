# Two commands do all set-up on a fresh machine:
#   make demo   installs what the demo needs into .venv and runs the offline demo (no downloads, no GPU)
#   make test   adds the test tools and the FVD and MedicalNet extras (TensorFlow, MONAI) to .venv, runs lint + the tests
# A CPU-only PyTorch is much smaller than the default Linux wheel (which bundles CUDA libraries):
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_PINS  ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=

.PHONY: demo test lint bench clean

$(VENV)/.installed-demo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PINS)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-demo
	$(BIN)/pip install -q -e ".[fvd,medicalnet,test]"
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/ctbench demo --out demo-out
	@echo "ctbench is installed in $(VENV): run '. $(VENV)/bin/activate' (then 'ctbench --help'), or $(BIN)/ctbench"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(VENV)/.installed-test lint
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

bench: $(VENV)/.installed-demo
	$(BIN)/python benchmarks/bench_cli.py
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_msssim.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) demo-out
