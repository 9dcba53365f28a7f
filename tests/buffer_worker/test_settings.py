"""The buffer worker's settings: defaults, the worker id's origins, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from buffer_worker.settings import BufferWorkerSettings
from fastwan_adapters.config import ConfigError

BASE = {"ORCHESTRATOR_BASE_URL": "https://orch.example/", "INTERNAL_API_KEY": "secret-key-123"}


def settings(**env: str) -> BufferWorkerSettings:
    return BufferWorkerSettings.from_env({**BASE, **env})


def test_defaults_are_the_contracts() -> None:
    read = settings(BUFFER_WORKER_ID="w-1")

    assert (read.heartbeat_interval_s, read.poll_interval_s, read.shutdown_grace_s) == (5.0, 2.0, 25.0)
    assert read.gpu_class is None and read.metrics_port is None
    assert read.state_dir == Path("state")
    assert read.orchestrator_url == "https://orch.example"
    assert read.api_key == "secret-key-123"


def test_every_variable_is_read() -> None:
    read = settings(
        BUFFER_WORKER_ID="w-2",
        GPU_CLASS="RTX 3080",
        HEARTBEAT_INTERVAL_S="0.5",
        BUFFER_POLL_INTERVAL_S="0.25",
        SHUTDOWN_GRACE_S="10",
        STATE_DIR="/var/lib/fastwan",
        METRICS_PORT="9100",
        ORCHESTRATOR_RETRY_INITIAL_S="0.2",
        ORCHESTRATOR_CALL_DEADLINE_S="4.5",
    )

    assert (read.worker_id, read.gpu_class) == ("w-2", "RTX 3080")
    assert (read.heartbeat_interval_s, read.poll_interval_s, read.shutdown_grace_s) == (0.5, 0.25, 10.0)
    assert (read.state_dir, read.metrics_port, read.retry_initial_s) == (Path("/var/lib/fastwan"), 9100, 0.2)
    assert read.call_deadline_s == 4.5
    assert settings().call_deadline_s == 15.0


def test_the_worker_id_comes_from_vasts_container_id_then_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings(CONTAINER_ID="12345").worker_id == "vast-12345"
    assert settings(CONTAINER_ID="12345", BUFFER_WORKER_ID="mine").worker_id == "mine"
    monkeypatch.setattr("socket.gethostname", lambda: "box-7")
    assert settings().worker_id == "box-7"


def test_the_worker_id_falls_back_to_vasts_container_label_before_the_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "box-7")
    assert settings(VAST_CONTAINERLABEL="C.12345").worker_id == "C.12345"  # as the sibling uses it
    assert settings(VAST_CONTAINERLABEL="C.12345", CONTAINER_ID="12345").worker_id == "vast-12345"
    assert settings(VAST_CONTAINERLABEL="C.1", BUFFER_WORKER_ID="mine").worker_id == "mine"
    with pytest.raises(ConfigError, match="VAST_CONTAINERLABEL must give a worker id"):
        settings(VAST_CONTAINERLABEL="C 1")


# -- the names the sibling worker's operators set: aliases, ours win ----------------------------


def aliased(**env: str) -> BufferWorkerSettings:
    return BufferWorkerSettings.from_env({"BUFFER_WORKER_ID": "w", "INTERNAL_API_KEY": "k", **env})


def test_buffer_orchestrator_base_url_stands_in_for_orchestrator_base_url() -> None:
    assert (
        aliased(BUFFER_ORCHESTRATOR_BASE_URL="https://sib.example/").orchestrator_url == "https://sib.example"
    )
    both = aliased(
        BUFFER_ORCHESTRATOR_BASE_URL="https://sib.example", ORCHESTRATOR_BASE_URL="https://o.example"
    )
    assert both.orchestrator_url == "https://o.example"
    with pytest.raises(ConfigError, match="BUFFER_ORCHESTRATOR_BASE_URL must start with http"):
        aliased(BUFFER_ORCHESTRATOR_BASE_URL="sib.example")
    with pytest.raises(ConfigError, match="INTERNAL_API_KEY is required when BUFFER_ORCHESTRATOR_BASE_URL"):
        BufferWorkerSettings.from_env(
            {"BUFFER_WORKER_ID": "w", "BUFFER_ORCHESTRATOR_BASE_URL": "https://s.example"}
        )


def test_gpu_class_name_stands_in_for_gpu_class() -> None:
    assert settings(GPU_CLASS_NAME="RTX-5090-FastWan").gpu_class == "RTX-5090-FastWan"
    assert settings(GPU_CLASS_NAME="RTX-5090-FastWan", GPU_CLASS="RTX 5090").gpu_class == "RTX 5090"
    assert settings(GPU_CLASS_NAME="  ", GPU_CLASS="").gpu_class is None  # blank is unset


def test_buffer_poll_interval_sec_stands_in_for_buffer_poll_interval_s() -> None:
    assert settings(BUFFER_POLL_INTERVAL_SEC="5").poll_interval_s == 5.0
    assert settings(BUFFER_POLL_INTERVAL_SEC="5", BUFFER_POLL_INTERVAL_S="0.5").poll_interval_s == 0.5
    with pytest.raises(ConfigError, match="BUFFER_POLL_INTERVAL_SEC must be a number, got 'often'"):
        settings(BUFFER_POLL_INTERVAL_SEC="often")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2", "BUFFER_CAPACITY must be 1, got 2: this worker runs one job at a time"),
        ("0", "BUFFER_CAPACITY must be 1, got 0: this worker runs one job at a time"),
        ("many", "BUFFER_CAPACITY must be an integer, got 'many'"),
    ],
)
def test_buffer_capacity_other_than_one_is_a_start_up_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(BUFFER_CAPACITY=value)


def test_buffer_capacity_one_is_accepted() -> None:
    assert settings(BUFFER_CAPACITY="1").worker_id  # starts


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HEARTBEAT_INTERVAL_S": "fast"}, "HEARTBEAT_INTERVAL_S must be a number, got 'fast'"),
        ({"HEARTBEAT_INTERVAL_S": "0"}, "HEARTBEAT_INTERVAL_S must be at least 0.05, got 0.0"),
        ({"BUFFER_POLL_INTERVAL_S": "-1"}, "BUFFER_POLL_INTERVAL_S must be at least 0.0"),
        ({"SHUTDOWN_GRACE_S": "soon"}, "SHUTDOWN_GRACE_S must be a number"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT must be at most 65535, got 70000"),
        ({"METRICS_PORT": "http"}, "METRICS_PORT must be an integer"),
        ({"BUFFER_WORKER_ID": "a/b"}, "BUFFER_WORKER_ID must give a worker id"),
        ({"ORCHESTRATOR_RETRY_INITIAL_S": "60"}, "ORCHESTRATOR_RETRY_INITIAL_S must be at most 30"),
        ({"ORCHESTRATOR_CALL_DEADLINE_S": "0"}, "ORCHESTRATOR_CALL_DEADLINE_S must be at least 0.1, got 0.0"),
        (
            {"ORCHESTRATOR_CALL_DEADLINE_S": "1000"},
            "ORCHESTRATOR_CALL_DEADLINE_S must be at most 300, got 1000",
        ),
        ({"ORCHESTRATOR_CALL_DEADLINE_S": "slow"}, "ORCHESTRATOR_CALL_DEADLINE_S must be a number"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        settings(**{"BUFFER_WORKER_ID": "w", **env})


def test_buffer_mode_needs_the_orchestrator_and_its_key() -> None:
    with pytest.raises(
        ConfigError,
        match=r"ORCHESTRATOR_BASE_URL \(or BUFFER_ORCHESTRATOR_BASE_URL\) is required in buffer mode",
    ):
        BufferWorkerSettings.from_env({"BUFFER_WORKER_ID": "w"})
    with pytest.raises(ConfigError, match="INTERNAL_API_KEY is required"):
        BufferWorkerSettings.from_env({"ORCHESTRATOR_BASE_URL": "https://o.example", "BUFFER_WORKER_ID": "w"})


def test_the_key_never_shows_in_the_settings_repr() -> None:
    assert "secret-key-123" not in repr(settings(BUFFER_WORKER_ID="w"))


def test_the_restart_count_comes_from_the_supervisor_and_defaults_to_zero() -> None:
    assert settings(BUFFER_WORKER_ID="w-1").restarts == 0
    assert settings(BUFFER_WORKER_ID="w-1", BUFFER_WORKER_RESTARTS="4").restarts == 4
    with pytest.raises(ConfigError, match="BUFFER_WORKER_RESTARTS"):
        settings(BUFFER_WORKER_ID="w-1", BUFFER_WORKER_RESTARTS="-1")
