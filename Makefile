# `make run` and `make test` each do the whole job on a fresh machine (see README.md).
# Every third-party version comes from the lock, locks/cpu.txt (`make lock` refreshes it).
# torch is locked as plain 2.13.0: on these machines pip takes the CPU wheel that lies on disk,
# and the lock holds that wheel's dependencies, no CUDA library. The Docker image installs the
# CUDA 12.8 build and locks/cu128.txt instead (docker/Dockerfile.fastwan).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
PKGS := packages/fastwan_core packages/fastwan_adapters apps/queue_worker apps/buffer_worker apps/generate_cli
LOCK := locks/cpu.txt
# `make lock`: uv, in a virtualenv of its own so that the project's stays exactly the lock.
UV_VERSION ?= 0.13.9
UV_VENV := .uv-venv
CPU_TORCH_FIND_LINKS ?= /opt/wheels
# `make run` builds the tiny model once, here (ignored by git, removed by `make clean`).
TINY_DIR := $(CURDIR)/.tiny-model

.PHONY: install lock tools test lint typecheck unit run clean image image-test chaos

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The lock pins every third-party package; our five distributions go in editable beside it
# (pip refuses if a pyproject.toml asks for a version the lock does not have: run `make lock`).
$(VENV)/.installed: $(BIN)/python $(foreach p,$(PKGS),$(p)/pyproject.toml) requirements-dev.txt $(LOCK)
	$(BIN)/pip install -q -r $(LOCK) $(foreach p,$(PKGS),-e "$(p)[test]")
	$(BIN)/pip check
	touch $@

install: $(VENV)/.installed

# Re-resolve locks/cpu.txt and locks/cu128.txt from locks/requirements.in after a dependency
# changed, keeping every pin that still fits; UPGRADE=1 takes the newest versions that fit.
lock:
	@[ -x $(UV_VENV)/bin/uv ] || { $(PYTHON) -m venv $(UV_VENV) && $(UV_VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(PYTHON) locks/refresh.py --uv $(UV_VENV)/bin/uv --torch $(TORCH_VERSION) \
	  --cpu-torch-find-links $(CPU_TORCH_FIND_LINKS) $(if $(UPGRADE),--upgrade)

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

# The image's CPU twin (docs/deploy.md): docker/Dockerfile.fastwan built by buildah from a
# debootstrapped Debian 12 base with the twin's build arguments (docker/build_twin.sh, which
# installs buildah and debootstrap when it can), then run by tests/image. Not part of `make test`:
# .ci/run runs `make image-test` after it. Both are cached: the base once per machine, the
# dependency layers until a lock changes.
TWIN_IMAGE ?= localhost/fastwan-worker-twin:latest

image:
	TWIN_IMAGE=$(TWIN_IMAGE) CPU_TORCH_FIND_LINKS=$(CPU_TORCH_FIND_LINKS) bash docker/build_twin.sh

image-test: install image
	FASTWAN_IMAGE_TESTS=1 TWIN_IMAGE=$(TWIN_IMAGE) HF_HUB_OFFLINE=1 $(BIN)/pytest tests/image

# The long chaos run (bench/chaos.py, issue 21): K buffer workers under the real supervisor and K
# queue workers behind the Salad double, tiny model, faults from a seeded schedule, every job
# checked against the ledgers and the store; a few minutes a seed here. `make test` runs a short
# one (tests/chaos). CHAOS_ARGS=--seed N replays a run's faults.
CHAOS_ARGS ?= --jobs 160 --workers 3

chaos: install
	HF_HUB_OFFLINE=1 $(BIN)/python bench/chaos.py --tiny-dir $(TINY_DIR) $(CHAOS_ARGS)

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
	rm -rf $(VENV) $(UV_VENV) .pytest_cache .mypy_cache .ruff_cache $(TINY_DIR)
