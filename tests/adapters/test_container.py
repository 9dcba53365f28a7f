"""The composition both workers share: built lazily from plain settings, B2 or local decided once."""

from __future__ import annotations

from pathlib import Path

import pytest
from dependency_injector import providers

from fastwan_adapters.config import ConfigError
from fastwan_adapters.container import GenerationContainer
from fastwan_adapters.progress_log import LoggingProgressReporter
from fastwan_adapters.settings import CommonSettings
from fastwan_adapters.storage import B2Settings, LocalResultStore
from fastwan_core import WorkerInfo
from fastwan_core.testing import FakeGenerator, RecordingProgressReporter

ENV = {"FASTWAN_MODEL": "tiny", "HF_HUB_OFFLINE": "1"}
B2 = {"B2_KEY_ID": "kid", "B2_APP_KEY": "app-secret", "B2_BUCKET_NAME": "bucket"}


def composed(env: dict[str, str]) -> GenerationContainer:
    return GenerationContainer(
        settings=providers.Object(CommonSettings.from_env({**ENV, **env})),
        orchestrator=providers.Object(None),
        worker=providers.Object(WorkerInfo("w-1", "1.0", "RTX 3080")),
    )


def test_nothing_is_built_until_the_use_case_is_asked_for(tmp_path: Path) -> None:
    container = composed({"OUTPUT_DIR": str(tmp_path / "out")})
    container.generator.override(providers.Object(FakeGenerator()))

    assert not (tmp_path / "out").exists()  # reading the settings touched no disk
    usecase = container.usecase()

    assert usecase is container.usecase()
    assert isinstance(usecase.store, LocalResultStore) and (tmp_path / "out").is_dir()
    assert isinstance(usecase.progress, LoggingProgressReporter)  # no orchestrator: progress is logged
    assert usecase.worker == WorkerInfo("w-1", "1.0", "RTX 3080")
    container.shutdown_resources()


def test_an_app_can_put_its_own_progress_port_in_front_of_the_sender(tmp_path: Path) -> None:
    container = composed({"OUTPUT_DIR": str(tmp_path)})
    container.generator.override(providers.Object(FakeGenerator()))
    recording = RecordingProgressReporter()
    container.progress.override(providers.Object(recording))

    assert container.usecase().progress is recording
    container.shutdown_resources()


def test_the_b2_variables_choose_b2_in_the_settings_and_their_key_is_scrubbed(tmp_path: Path) -> None:
    settings = CommonSettings.from_env({**ENV, **B2, "OUTPUT_DIR": str(tmp_path / "out")})

    assert isinstance(settings.storage, B2Settings) and settings.storage.bucket_name == "bucket"
    assert "app-secret" in settings.secrets() and "app-secret" not in repr(settings)
    assert not (tmp_path / "out").exists()


def test_half_set_b2_variables_stop_the_settings() -> None:
    with pytest.raises(ConfigError, match="B2_APP_KEY, B2_BUCKET_NAME must be set"):
        CommonSettings.from_env({**ENV, "B2_KEY_ID": "kid"})
