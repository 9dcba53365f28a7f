"""The environment is checked once, at start-up, with errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastwan_adapters.config import ConfigError
from fastwan_adapters.storage import B2Settings, LocalResultStore, open_result_store
from queue_worker.settings import QueueWorkerSettings


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"OUTPUT_DIR": str(tmp_path / "out"), **values}


def test_the_embedded_default_is_port_8000_local_storage_and_no_orchestrator(tmp_path: Path) -> None:
    settings = QueueWorkerSettings.from_env(env(tmp_path))
    created = (tmp_path / "out").is_dir()  # by the settings, before any store is opened
    store = open_result_store(settings.common.storage)

    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.shutdown_grace_s == 25.0
    assert settings.common.orchestrator_url is None
    assert isinstance(store, LocalResultStore)
    assert store.directory == (tmp_path / "out").resolve()
    assert created and store.directory.is_dir()
    assert store.url_for("j-1.mp4") == "http://localhost:8000/outputs/j-1.mp4"


def test_public_base_url_sets_where_local_outputs_are_served(tmp_path: Path) -> None:
    settings = QueueWorkerSettings.from_env(env(tmp_path, PORT="9000", PUBLIC_BASE_URL="https://w.example/"))

    assert settings.local_store is not None
    assert (
        LocalResultStore.open(settings.local_store).url_for("j-1.mp4") == "https://w.example/outputs/j-1.mp4"
    )


def test_b2_variables_select_b2_without_touching_the_network(tmp_path: Path) -> None:
    b2 = {"B2_KEY_ID": "key-id", "B2_APP_KEY": "app-secret", "B2_BUCKET_NAME": "talking-avatar"}
    settings = QueueWorkerSettings.from_env(env(tmp_path, **b2))

    assert isinstance(settings.common.storage, B2Settings)
    assert settings.local_store is None
    assert "app-secret" not in repr(settings)
    assert "app-secret" in settings.common.secrets()


def test_worker_id_comes_from_worker_id_then_salad_machine_id(tmp_path: Path) -> None:
    salad = QueueWorkerSettings.from_env(env(tmp_path, SALAD_MACHINE_ID="m-42"))
    explicit = QueueWorkerSettings.from_env(env(tmp_path, SALAD_MACHINE_ID="m-42", WORKER_ID="w-1"))

    assert salad.worker_id == "salad-m-42"
    assert explicit.worker_id == "w-1"


def test_gpu_class_or_its_alias_gpu_class_name_names_the_gpu_in_metrics(tmp_path: Path) -> None:
    def gpu_class(**values: str) -> str | None:
        return QueueWorkerSettings.from_env(env(tmp_path, **values)).gpu_class

    assert gpu_class() is None  # the GPU's own name, filled in by the use case
    assert gpu_class(GPU_CLASS_NAME="RTX-5090-FastWan") == "RTX-5090-FastWan"
    assert gpu_class(GPU_CLASS_NAME="RTX-5090-FastWan", GPU_CLASS="RTX 5090") == "RTX 5090"


def test_the_buffer_orchestrator_alias_is_not_read_in_queue_mode(tmp_path: Path) -> None:
    settings = QueueWorkerSettings.from_env(env(tmp_path, BUFFER_ORCHESTRATOR_BASE_URL="https://o.example"))
    assert settings.common.orchestrator_url is None


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"PORT": "eighty"}, "PORT must be an integer"),
        ({"PORT": "70000"}, "PORT must be at most 65535"),
        ({"PORT": "0"}, "PORT must be at least 1"),
        ({"SHUTDOWN_GRACE_S": "-1"}, "SHUTDOWN_GRACE_S must be at least 0"),
        ({"FATAL_EXIT_DELAY_S": "soon"}, "FATAL_EXIT_DELAY_S must be a number"),
        ({"PUBLIC_BASE_URL": "ftp://x"}, "PUBLIC_BASE_URL must start with http"),
        ({"ORCHESTRATOR_BASE_URL": "https://orch.example"}, "INTERNAL_API_KEY is required"),
        ({"B2_KEY_ID": "k"}, "B2_APP_KEY, B2_BUCKET_NAME must be set"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of"),
        ({"ALLOW_PRIVATE_IMAGE_URLS": "maybe"}, "ALLOW_PRIVATE_IMAGE_URLS must be one of"),
    ],
)
def test_a_wrong_variable_is_named(tmp_path: Path, values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        QueueWorkerSettings.from_env(env(tmp_path, **values))


def test_an_output_dir_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    with pytest.raises(ConfigError, match="OUTPUT_DIR"):
        QueueWorkerSettings.from_env({"OUTPUT_DIR": str(blocker / "out")})


def test_body_timeout_s_bounds_the_wait_for_a_jobs_body(tmp_path: Path) -> None:
    assert QueueWorkerSettings.from_env(env(tmp_path)).body_timeout_s == 30.0
    assert QueueWorkerSettings.from_env(env(tmp_path, BODY_TIMEOUT_S="2.5")).body_timeout_s == 2.5


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_body_timeout_that_is_not_a_positive_number_of_seconds_is_named(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="BODY_TIMEOUT_S must be a number"):
        QueueWorkerSettings.from_env(env(tmp_path, BODY_TIMEOUT_S=value))
