"""The composition root: the worker is composed without loading the model, and start-up errors
name their variable and exit 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dependency_injector import providers

from buffer_worker.containers import Container
from buffer_worker.settings import BufferWorkerSettings
from buffer_worker.worker import BufferWorker
from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.orchestrator import OrchestratorClient, OrchestratorProgressReporter, StatusOutbox
from fastwan_adapters.storage import LocalResultStore
from fastwan_core.testing import FakeGenerator

ENV = {
    "ORCHESTRATOR_BASE_URL": "http://127.0.0.1:9",
    "INTERNAL_API_KEY": "key-for-tests",
    "BUFFER_WORKER_ID": "w-1",
    "GPU_CLASS": "RTX 3080",
    "FASTWAN_MODEL": "tiny",
}


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    made = Container(settings=BufferWorkerSettings.from_env({**ENV, "STATE_DIR": str(tmp_path / "state")}))
    yield made
    made.shutdown_resources()


def test_the_worker_is_composed_without_loading_the_model(container: Container, tmp_path: Path) -> None:
    worker = container.worker()

    assert isinstance(worker, BufferWorker)
    assert container.worker() is worker
    assert container.worker_info().gpu_class == "RTX 3080"
    assert isinstance(container.outbox(), StatusOutbox)
    assert container.outbox().directory == tmp_path / "state" / "status-outbox"
    assert not container.generation.generator.initialized
    assert isinstance(container.client(), OrchestratorClient)  # the one pooled client
    assert isinstance(container.progress().sender, OrchestratorProgressReporter)


def test_the_settings_handed_in_choose_the_store_and_the_use_case_reports_to_the_board(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "OUTPUT_DIR", str(tmp_path / "not-this-one")
    )  # main reads the environment, not the container
    env = {**ENV, "STATE_DIR": str(tmp_path / "state"), "OUTPUT_DIR": str(tmp_path / "outputs")}
    made = Container(settings=BufferWorkerSettings.from_env(env))
    made.generation.generator.override(providers.Object(FakeGenerator()))

    usecase = made.generation.usecase()

    assert isinstance(usecase.store, LocalResultStore)
    assert usecase.store.directory == (tmp_path / "outputs").resolve()
    assert not (tmp_path / "not-this-one").exists()
    assert usecase.progress is made.progress()  # the worker first, then the orchestrator
    assert usecase.worker == made.worker_info() and usecase.clock is made.generation.clock()
    made.shutdown_resources()


def test_a_bad_setting_surfaces_when_the_settings_are_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HEARTBEAT_INTERVAL_S must be a number"):
        Container(settings=BufferWorkerSettings.from_env({**ENV, "HEARTBEAT_INTERVAL_S": "often"})).worker()


def test_the_program_exits_2_naming_the_missing_variable() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "BUFFER_WORKER_ID": "w-1"}

    done = subprocess.run(
        [sys.executable, "-m", "buffer_worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == ExitCode.CONFIG
    assert "ORCHESTRATOR_BASE_URL (or BUFFER_ORCHESTRATOR_BASE_URL) is required in buffer mode" in done.stderr
    assert "Traceback" not in done.stderr
