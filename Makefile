# One command does the whole job on a fresh machine: `make test`.
# torch is pinned to the CPU wheel that lies on these machines; the Docker image installs
# the CUDA build instead (docker/Dockerfile.fastwan).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
PKGS := packages/fastwan_core packages/fastwan_adapters apps/queue_worker apps/buffer_worker apps/generate_cli

.PHONY: install test lint typecheck unit run clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q $(foreach p,$(PKGS),-e "$(p)[test]") -r requirements-dev.txt

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	HF_HUB_OFFLINE=1 FASTWAN_TINY_DIR=$(CURDIR)/.tiny-model $(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .tiny-model
