# Quick start: `make demo`, then `make test`. Each target creates or reuses .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-sim
EXEC   := $(VENV)/.installed-exec

.PHONY: demo test bench figures clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fmplex-sim compare experiments/demo/config.yaml --systems spatial,colocate,fmplex --out results/demo

# The paper's figures: every simulation behind them, then the PNG/PDF figures and headlines.json
# (results/figures/). Reads ../shared/traces and results/validation/ when present; runs no torch.
figures: $(STAMP)
	$(BIN)/python experiments/figures/make_figures.py --out results/figures

# The execution harness needs torch (CPU build, pinned), transformers and peft.
$(EXEC): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,exec]'
	touch $(EXEC)

test: $(EXEC)
	$(BIN)/python -m pytest -q

bench: $(EXEC)
	$(BIN)/python experiments/bench/bench.py --out results/bench
	$(BIN)/python experiments/bench/exec_bench.py --json results/bench/exec.json

clean:
	rm -rf results .pytest_cache
