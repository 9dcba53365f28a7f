# `make run` and `make test` each do the whole job on a fresh machine (see README.md).
# torch is pinned: on these machines pip takes the CPU wheel that lies on disk; letting an
# installer pick torch from the registry would pull a multi-GB CUDA build. The Docker image
# installs the CUDA 12.8 build instead (docker/Dockerfile.fastwan).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
PKGS := packages/fastwan_core packages/fastwan_adapters apps/queue_worker apps/buffer_worker apps/generate_cli
# `make run` builds the tiny model once, here (ignored by git, removed by `make clean`).
TINY_DIR := $(CURDIR)/.tiny-model

.PHONY: install tools test lint typecheck unit run clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python $(foreach p,$(PKGS),$(p)/pyproject.toml) requirements-dev.txt
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q $(foreach p,$(PKGS),-e "$(p)[test]") -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# shellcheck lints docker/run_fastwan_worker.sh; it comes from Debian, not PyPI.
tools:
	@command -v shellcheck >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null; } \
	  || echo "shellcheck is not installed: the shell-lint tests will be skipped (they fail under CI=true)"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install tools
	HF_HUB_OFFLINE=1 $(BIN)/pytest

test: lint typecheck unit

# The queue worker on its embedded defaults: local storage served under /outputs, no
# orchestrator. Without an NVIDIA GPU the tiny random-weight model (its videos are noise).
run: install
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "GPU found: serving $${FASTWAN_MODEL:-FastVideo/FastWan2.2-TI2V-5B-Diffusers}"; \
	  exec $(BIN)/fastwan-queue-worker; \
	else \
	  echo "no NVIDIA GPU: serving FASTWAN_MODEL=tiny (random weights, its videos are noise)"; \
	  FASTWAN_MODEL=tiny FASTWAN_TINY_DIR=$(TINY_DIR) exec $(BIN)/fastwan-queue-worker; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(TINY_DIR)
