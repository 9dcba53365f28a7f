"""Downloads from the Hugging Face Hub: passing failures retried for a bounded time, lasting ones
reported at once as configuration errors with their reason.

The real huggingface_hub talks over real HTTP to a Hub double on loopback (``HF_ENDPOINT``),
so the errors classified are the ones the library really raises.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import torch

from fastwan_adapters.config import ConfigError
from fastwan_adapters.generator import (
    GeneratorSettings,
    ModelDownloadFailed,
    ModelUnavailableError,
    StartupStopped,
)
from fastwan_adapters.generator.hub import resolve_model_folder
from fastwan_adapters.generator.hub_retry import DownloadRetry
from fastwan_adapters.generator.taehv_files import load_tiny_decoder
from fastwan_adapters.testing.hub_double import HubDouble, HubFault
from tests.adapters.test_taehv import published_file

_REPO = "org/wan"
_FILES = {
    "model_index.json": b'{"_class_name": "WanPipeline"}',
    "transformer/config.json": b'{"in_channels": 48}',
    "vae/config.json": b'{"z_dim": 48}',
    "README.md": b"not fetched: outside the folders the generator loads",
}
# Fast enough for a test: waits of a few tens of milliseconds, half a second of failing in all.
_QUICK = {
    "FASTWAN_DOWNLOAD_RETRY_S": "0.5",
    "FASTWAN_DOWNLOAD_RETRY_INITIAL_S": "0.02",
    "FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S": "0.1",
}
_RETRY_LOGGER = "fastwan_adapters.generator.hub_retry"


@pytest.fixture(autouse=True)
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub's own offline switch, read from the tests' ``HF_HUB_OFFLINE=1`` at its
    import, would refuse even loopback; these tests say offline through the settings instead."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub() -> Iterator[HubDouble]:
    with HubDouble({_REPO: _FILES, "org/gated": _FILES}, gated=frozenset({"org/gated"})) as double:
        yield double


def settings(tmp_path: Path, endpoint: str, **env: str) -> GeneratorSettings:
    values: Mapping[str, str] = {
        "FASTWAN_MODEL": _REPO,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": endpoint,
        **_QUICK,
        **env,
    }
    return GeneratorSettings.from_env(values)


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == _RETRY_LOGGER]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_hub_answering_503_then_429_is_retried_and_the_model_then_downloads(
    hub: HubDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.fail(HubFault(503, times=1))
    hub.fail(HubFault(429, times=1))
    caplog.set_level(logging.INFO)

    folder = resolve_model_folder(settings(tmp_path, hub.url))

    assert (folder / "transformer" / "config.json").read_bytes() == _FILES["transformer/config.json"]
    assert (folder / "model_index.json").read_bytes() == _FILES["model_index.json"]
    assert not (folder / "README.md").exists()
    lines = retries_logged(caplog)
    assert len(lines) == 2, lines
    assert "download attempt 1 failed: the Hub answered HTTP 503" in lines[0]
    assert "download attempt 2 failed: the Hub answered HTTP 429" in lines[1]
    assert all(
        f"FASTWAN_MODEL={_REPO!r}" in line and "since the first failure, retrying in" in line
        for line in lines
    )
    assert all("FASTWAN_DOWNLOAD_RETRY_S=0.5" in line for line in lines)


def test_a_tiny_decoder_download_answered_503_is_retried_and_then_loads(
    hub: HubDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    published_file(tmp_path / "taew2_2.pth")
    hub.repos["org/taehv"] = {"taew2_2.pth": (tmp_path / "taew2_2.pth").read_bytes()}
    hub.fail(HubFault(503, method="GET", path_part="/resolve/", times=2))
    caplog.set_level(logging.INFO)

    decoder = load_tiny_decoder(
        "org/taehv/taew2_2.pth",
        cache_dir=tmp_path / "hub",
        offline=False,
        retry=DownloadRetry.from_env(_QUICK),
        endpoint=hub.url,
    )

    state = torch.load(tmp_path / "taew2_2.pth", weights_only=True)
    assert torch.equal(decoder.decoder[1].weight, state["decoder.1.weight"])
    assert len(retries_logged(caplog)) == 2


def test_a_hub_down_for_longer_than_the_retry_time_is_worth_a_restart_not_a_config_error(
    hub: HubDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.fail(HubFault(503))

    with pytest.raises(ModelDownloadFailed) as caught:
        resolve_model_folder(settings(tmp_path, hub.url))

    assert not isinstance(caught.value, ConfigError)
    message = str(caught.value)
    assert f"FASTWAN_MODEL={_REPO!r}" in message and str(tmp_path / "hf" / "hub") in message
    assert "the Hub answered HTTP 503" in message and "FASTWAN_DOWNLOAD_RETRY_S=0.5" in message
    attempts = len(hub.requests)
    assert attempts >= 3 and f"after {attempts} attempts" in message
    assert len(retries_logged(caplog)) == attempts - 1


def test_a_refused_connection_is_not_read_as_offline_and_is_retried_then_worth_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """huggingface_hub says "not in the cache" both offline and when the Hub cannot be reached."""
    with pytest.raises(ModelDownloadFailed, match=r"the connection to the Hub failed \(ConnectError\)"):
        resolve_model_folder(settings(tmp_path, f"http://127.0.0.1:{closed_port()}"))

    assert len(retries_logged(caplog)) >= 2


def test_no_retry_time_fails_at_the_first_passing_failure(hub: HubDouble, tmp_path: Path) -> None:
    hub.fail(HubFault(503))

    with pytest.raises(ModelDownloadFailed, match="after 1 attempt over"):
        resolve_model_folder(settings(tmp_path, hub.url, FASTWAN_DOWNLOAD_RETRY_S="0"))

    assert len(hub.requests) == 1


@pytest.mark.parametrize(
    ("model", "fault", "reason"),
    [
        ("org/missing", None, "no such repository on the Hub"),
        ("org/gated", None, "the repository is gated and no token (HF_TOKEN) gives access to it"),
        (_REPO, HubFault(401, path_part="/resolve/"), "the Hub refused access (HTTP 401): check HF_TOKEN"),
        (_REPO, HubFault(403, path_part="/resolve/"), "the Hub refused access (HTTP 403): check HF_TOKEN"),
    ],
    ids=["repository not found", "gated", "401", "403"],
)
def test_a_lasting_failure_is_a_config_error_with_its_reason_and_no_retry(
    hub: HubDouble,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    model: str,
    fault: HubFault | None,
    reason: str,
) -> None:
    if fault is not None:
        hub.fail(fault)

    with pytest.raises(ModelUnavailableError) as caught:
        resolve_model_folder(settings(tmp_path, hub.url, FASTWAN_MODEL=model))

    assert isinstance(caught.value, ConfigError)
    assert f"FASTWAN_MODEL={model!r}" in str(caught.value) and reason in str(caught.value)
    assert retries_logged(caplog) == []


def test_a_missing_hub_file_is_a_config_error_naming_the_variable(hub: HubDouble, tmp_path: Path) -> None:
    hub.repos["org/taehv"] = {"taew2_2.pth": b"..."}

    with pytest.raises(
        ModelUnavailableError, match=r"'org/taehv/lighttaew2_2\.pth'.*the repository has no such file"
    ):
        load_tiny_decoder(
            "org/taehv/lighttaew2_2.pth",
            cache_dir=tmp_path,
            offline=False,
            retry=DownloadRetry(),
            endpoint=hub.url,
        )


def test_offline_and_not_cached_is_a_config_error_even_with_the_hub_reachable(
    hub: HubDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(
        ModelUnavailableError, match=r"not in the cache and downloads are off \(HF_HUB_OFFLINE=1\)"
    ):
        resolve_model_folder(settings(tmp_path, hub.url, HF_HUB_OFFLINE="1"))

    assert hub.requests == [] and retries_logged(caplog) == []


def test_a_full_disk_is_a_config_error_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import huggingface_hub

    def full(*_args: object, **_kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", full)

    with pytest.raises(ModelUnavailableError, match=r"FASTWAN_MODEL='org/wan' .*: the disk is full"):
        resolve_model_folder(settings(tmp_path, "http://127.0.0.1:9"))

    assert retries_logged(caplog) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FASTWAN_DOWNLOAD_RETRY_S", "-1"),
        ("FASTWAN_DOWNLOAD_RETRY_S", "nan"),
        ("FASTWAN_DOWNLOAD_RETRY_S", "soon"),
        ("FASTWAN_DOWNLOAD_RETRY_INITIAL_S", "0"),
        ("FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S", "inf"),
    ],
)
def test_a_bad_retry_setting_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"{variable} must be a finite number of seconds.*{value!r}"):
        GeneratorSettings.from_env({variable: value})


def test_the_longest_wait_may_not_be_shorter_than_the_first() -> None:
    with pytest.raises(ConfigError, match="FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S must be at least"):
        GeneratorSettings.from_env(
            {"FASTWAN_DOWNLOAD_RETRY_INITIAL_S": "5", "FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S": "1"}
        )


def test_the_retry_defaults_ride_out_an_outage_of_minutes() -> None:
    retry = GeneratorSettings.from_env({}).download_retry

    assert retry == DownloadRetry(deadline_s=600.0, initial_s=2.0, max_wait_s=60.0)


def test_hf_endpoint_must_be_a_url() -> None:
    with pytest.raises(
        ConfigError, match=r"HF_ENDPOINT must be an http:// or https:// URL, got 'hub\.local'"
    ):
        GeneratorSettings.from_env({"HF_ENDPOINT": "hub.local"})


# -- the bound covers what huggingface_hub does inside one attempt; a stop ends every wait ------


def head_requests(hub: HubDouble) -> list[str]:
    return [path for method, path in hub.requests if method == "HEAD"]


def most_asks_of_one_file(hub: HubDouble) -> int:
    """How many times the file asked for most often was asked for (its HEAD requests)."""
    return max(Counter(head_requests(hub)).values())


def test_huggingface_hubs_own_retries_count_toward_the_retry_time(hub: HubDouble, tmp_path: Path) -> None:
    """huggingface_hub retries a file's HEAD answered 5xx up to 5 times, waiting 1+2+4+8+8 s,
    inside one call: a budget of 1 s took one such call (23 s, 6 requests) at least."""
    hub.fail(HubFault(503, method="HEAD", path_part="/resolve/"))

    with pytest.raises(ModelDownloadFailed, match="the Hub answered HTTP 503") as caught:
        resolve_model_folder(settings(tmp_path, hub.url, FASTWAN_DOWNLOAD_RETRY_S="1"))

    assert most_asks_of_one_file(hub) < 6, hub.requests
    assert "FASTWAN_DOWNLOAD_RETRY_S=1" in str(caught.value)


def test_no_retry_time_is_one_attempt_that_ends_at_its_first_failed_request(
    hub: HubDouble, tmp_path: Path
) -> None:
    hub.fail(HubFault(503, method="HEAD", path_part="/resolve/"))

    with pytest.raises(ModelDownloadFailed, match="after 1 attempt over"):
        resolve_model_folder(settings(tmp_path, hub.url, FASTWAN_DOWNLOAD_RETRY_S="0"))

    assert most_asks_of_one_file(hub) < 6, hub.requests


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A server that accepts every connection, reads what it is sent and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stopping.set()
    listener.close()
    for conn in held:
        conn.close()


def in_thread(work: Callable[[], object], limit_s: float) -> BaseException | None:
    """What ``work`` raised, or None; fails the test if it is still running after ``limit_s``."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"still running after {limit_s} s"
    return raised[0] if raised else None


def test_a_hub_that_never_answers_fails_past_the_read_deadline_and_the_retry_time(
    silent_hub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)

    error = in_thread(
        lambda: resolve_model_folder(settings(tmp_path, silent_hub, FASTWAN_DOWNLOAD_RETRY_S="1")), 60
    )

    assert isinstance(error, ModelDownloadFailed), repr(error)
    assert "the Hub did not answer within 1 s (HF_HUB_DOWNLOAD_TIMEOUT)" in str(error)


def test_a_stop_ends_a_retried_download_at_once_and_nothing_more_is_asked_of_the_hub(
    hub: HubDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The buffer worker kept retrying for FASTWAN_DOWNLOAD_RETRY_S after SIGTERM (finding 1)."""
    hub.fail(HubFault(503, method="HEAD", path_part="/resolve/"))
    stop = threading.Event()
    caplog.set_level(logging.WARNING, logger=_RETRY_LOGGER)
    long_retry = {
        "FASTWAN_DOWNLOAD_RETRY_S": "600",
        "FASTWAN_DOWNLOAD_RETRY_INITIAL_S": "5",
        "FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S": "60",
    }
    outcome: list[BaseException] = []

    def download() -> None:
        try:
            resolve_model_folder(settings(tmp_path, hub.url, **long_retry), stop=stop)
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=download, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while len(head_requests(hub)) < 4 and time.monotonic() < deadline:  # inside huggingface_hub's retries
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    asked = len(hub.requests)
    time.sleep(1.5)  # huggingface_hub's next retry would come by now

    assert not thread.is_alive(), "the download did not end on the stop"
    assert isinstance(outcome[0], StartupStopped) and "FASTWAN_MODEL='org/wan'" in str(outcome[0])
    assert len(hub.requests) == asked, hub.requests[asked:]


def test_a_stop_during_the_wait_between_attempts_ends_it(hub: HubDouble, tmp_path: Path) -> None:
    hub.fail(HubFault(503))
    stop = threading.Event()
    long_wait = {
        "FASTWAN_DOWNLOAD_RETRY_S": "600",
        "FASTWAN_DOWNLOAD_RETRY_INITIAL_S": "30",
        "FASTWAN_DOWNLOAD_RETRY_MAX_WAIT_S": "60",
    }
    threading.Timer(0.5, stop.set).start()

    error = in_thread(lambda: resolve_model_folder(settings(tmp_path, hub.url, **long_wait), stop=stop), 10)

    assert isinstance(error, StartupStopped), repr(error)
    assert len(hub.requests) == 1
