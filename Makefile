# attnlab: `make train` and `make test` set everything up on first use.
# GPU machines: make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
# CPU machines with internet (to skip CUDA wheels): TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.install-stamp
ARGS ?=
PYTEST_ARGS ?=
NAMES ?=

.DEFAULT_GOAL := help
COMPARE_DIR ?= logs/compare_example
LADDER_DIR ?= logs/ladder_example
.PHONY: help install data train compare-example ladder-example test test-slow test-all lint format clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Re-installs when pyproject.toml changes or the venv is missing; code is installed editable.
# Quiet: pip's errors only (PIP_QUIET=-q shows its warnings too). setuptools' "Editable
# installation" notice (a folder named like the package may shadow it) is silenced: the one
# such folder that matters, a clone named attnlab, gets the note below instead.
PIP_QUIET ?= -qq
PIP := $(BIN)/python -m pip $(PIP_QUIET)
$(STAMP): pyproject.toml
	@echo "Installing attnlab and its dependencies into $(VENV) (once; a few minutes)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	@PYTHONWARNINGS="ignore:Editable installation" $(PIP) install -e ".[all,dev]"
	@# attnlab's own Optuna sweeper replaced this plugin (pinned to Optuna 2): gone from old venvs
	@$(PIP) uninstall -y hydra-optuna-sweeper 2>/dev/null || true
	@touch $@
	@echo "Installed: $(VENV)/bin/attnlab-train and the other commands."
	@if [ "$$(basename "$$PWD")" = attnlab ]; then echo "Note: this clone's folder is named \
	attnlab, so Python started in $$(dirname "$$PWD") imports the folder instead of the package \
	(module 'attnlab' has no attribute 'load'): start Python elsewhere, or rename the clone."; fi

install: $(STAMP) ## create .venv and install attnlab (editable) with every extra and the dev tools

data: $(STAMP) ## download the real datasets (sha256-checked) into ATTNLAB_DATA_DIR, else ./data (NAMES=sst2 ...)
	$(BIN)/attnlab-data download $(NAMES)

# The config tree (~170 lines) is left out: the first training line comes within a screen.
train: $(STAMP) ## the quick-start run: encoder-decoder learns to reverse sequences (ARGS=... for overrides)
	$(BIN)/attnlab-train experiment=encdec_reverse print_config=false $(ARGS)

compare-example: $(STAMP) ## sweep GPT positions (learned, rope) x 2 seeds on Tiny Shakespeare, then compare
	$(BIN)/attnlab-train -m experiment=gpt_shakespeare_char_cpu model.pos=learned,rope seed=1,2 \
		trainer.max_steps=600 trainer.val_check_interval=100 \
		callbacks.rich_progress_bar=null print_config=false hydra.sweep.dir=$(COMPARE_DIR) $(ARGS)
	$(BIN)/attnlab-compare $(COMPARE_DIR)

# The documented ladder result (docs/ladders.md): 4 rungs x positions x activations x 2 seeds.
ladder-example: $(STAMP) ## scaling ladder on Tiny Shakespeare (learned/rope x gelu/swiglu), then the fit
	$(BIN)/attnlab-train -m ladder=tiny_cpu ladder.rung=0,1,2,3 model.pos=learned,rope \
		model.activation=gelu,swiglu seed=1,2 print_config=false hydra.sweep.dir=$(LADDER_DIR) $(ARGS)
	$(BIN)/attnlab-compare --ladder $(LADDER_DIR) --baseline "model.activation=gelu model.pos=learned" --budget 1e13

# pytest-xdist: one worker per core (TEST_WORKERS=0 runs in this process); worksteal balances
# the long tests. A single file or test: .venv/bin/python -m pytest tests/... (no workers).
TEST_WORKERS ?= auto
XDIST = -n $(TEST_WORKERS) --dist worksteal

test: $(STAMP) ## the default test suite (about 5 minutes on 2 CPU cores)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-slow: $(STAMP) ## the slower end-to-end tests
	$(BIN)/python -m pytest -m slow $(XDIST) $(PYTEST_ARGS)

test-all: $(STAMP) ## every test
	$(BIN)/python -m pytest -m "slow or not slow" $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint + format check + import contracts (layers, no circles)
	$(BIN)/ruff check src tests scripts examples
	$(BIN)/ruff format --check src tests scripts examples
	$(BIN)/lint-imports  # the layers and no import circles: [tool.importlinter] in pyproject.toml

format: $(STAMP) ## ruff autofix + format
	$(BIN)/ruff check --fix src tests scripts examples
	$(BIN)/ruff format src tests scripts examples

clean: ## remove caches and build files (keeps .venv, logs/ and data/)
	rm -rf build dist .pytest_cache .ruff_cache src/*.egg-info
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
