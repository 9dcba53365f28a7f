"""The supervisor's rules: the restart backoff and the plan of workers per GPU (a stub ``nvidia-smi``
where the GPU list is read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from buffer_worker.fleet.__main__ import main
from buffer_worker.fleet.backoff import RestartBackoff
from buffer_worker.fleet.plan import GpuListUnreadable, list_gpus, plan_workers
from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode

BASE = {"BUFFER_WORKER_ID": "vast-7", "STATE_DIR": "/data/state", "METRICS_PORT": "9100", "PATH": "/nowhere"}


def test_the_backoff_doubles_from_one_second_to_a_minute() -> None:
    backoff = RestartBackoff()

    assert [backoff.delay(uptime_s=0.5) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_ten_minutes_up_resets_the_backoff() -> None:
    backoff = RestartBackoff(initial_s=0.5)
    assert [backoff.delay(uptime_s=3) for _ in range(3)] == [0.5, 1, 2]

    assert backoff.delay(uptime_s=600) == 0.5
    assert backoff.delay(uptime_s=599) == 1


def test_one_gpu_keeps_the_containers_environment_untouched() -> None:
    (plan,) = plan_workers(BASE, ["0"])

    assert plan.env == BASE and plan.gpu is None


def test_each_gpu_gets_its_device_id_state_folder_and_port() -> None:
    plans = plan_workers(BASE, ["0", "1", "2"])

    assert [(p.name, p.gpu) for p in plans] == [("gpu0", "0"), ("gpu1", "1"), ("gpu2", "2")]
    assert [
        (p.env["CUDA_VISIBLE_DEVICES"], p.env["BUFFER_WORKER_ID"], p.env["STATE_DIR"], p.env["METRICS_PORT"])
        for p in plans
    ] == [
        ("0", "vast-7-gpu0", "/data/state/gpu0", "9100"),
        ("1", "vast-7-gpu1", "/data/state/gpu1", "9101"),
        ("2", "vast-7-gpu2", "/data/state/gpu2", "9102"),
    ]


def test_the_default_worker_id_and_state_folder_get_the_suffix_too() -> None:
    plans = plan_workers({"CONTAINER_ID": "123", "PATH": "/nowhere"}, ["0", "1"])

    assert [(p.env["BUFFER_WORKER_ID"], p.env["STATE_DIR"]) for p in plans] == [
        ("vast-123-gpu0", "./state/gpu0"),
        ("vast-123-gpu1", "./state/gpu1"),
    ]
    assert all("METRICS_PORT" not in p.env for p in plans)


@pytest.mark.parametrize(("setting", "count"), [("auto", 2), ("2", 2), ("1", 1), (" AUTO ", 2)])
def test_buffer_workers_is_auto_or_at_most_one_per_gpu(setting: str, count: int) -> None:
    assert len(plan_workers({**BASE, "BUFFER_WORKERS": setting}, ["0", "1"])) == count


@pytest.mark.parametrize(
    ("setting", "message"), [("0", "a positive integer"), ("many", "'many'"), ("3", "sees 2")]
)
def test_a_bad_buffer_workers_names_the_variable(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match="BUFFER_WORKERS") as caught:
        plan_workers({**BASE, "BUFFER_WORKERS": setting}, ["0", "1"])
    assert message in str(caught.value)


def test_without_a_gpu_list_auto_is_one_worker() -> None:
    assert len(plan_workers(BASE, None)) == 1
    assert list_gpus(BASE) is None  # no nvidia-smi on this PATH


def test_the_gpus_an_operator_made_visible_are_the_ones_shared_out() -> None:
    gpus = list_gpus({**BASE, "CUDA_VISIBLE_DEVICES": "2, 5"})

    assert gpus == ["2", "5"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plan_workers(BASE, gpus)] == ["2", "5"]


def stub_nvidia_smi(folder: Path, body: str) -> dict[str, str]:
    """A PATH whose only ``nvidia-smi`` runs ``body`` (a real process, as the driver's tool is)."""
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return {**BASE, "PATH": f"{folder}:/usr/bin:/bin"}


def test_a_hanging_nvidia_smi_is_given_up_on_and_is_an_error_not_one_quiet_worker(tmp_path: Path) -> None:
    env = stub_nvidia_smi(tmp_path, "exec sleep 60")

    with pytest.raises(GpuListUnreadable, match=r"did not list the GPUs within 0.5 s"):
        list_gpus(env, timeout_s=0.5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("echo 'NVIDIA-SMI has failed' >&2; exit 9", "failed with status 9: 'NVIDIA-SMI has failed'"),
        ("echo 'No devices'", "'No devices\\n', not as indices"),
    ],
)
@pytest.mark.usefixtures("restored_logging")
def test_a_gpu_list_that_cannot_be_read_ends_the_supervisor_with_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, message: str
) -> None:
    env = stub_nvidia_smi(tmp_path, body)

    status = main([], env)

    logged = capsys.readouterr().err
    assert status == ExitCode.RESTART
    assert message in logged and "CUDA_VISIBLE_DEVICES" in logged


def test_metrics_ports_past_65535_name_the_variable_that_was_set() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_workers({**BASE, "METRICS_PORT": "65535"}, ["0", "1"])

    message = str(caught.value)
    assert "METRICS_PORT=65535" in message and "2 workers" in message and "at most 65534" in message
