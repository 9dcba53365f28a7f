"""The buffer worker's log when start-up fails with every credential in hand: the reason and
the trace, no secret, in both log formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastwan_adapters.testing import OrchestratorDouble
from tests.buffer_worker.harness import WorkerProcess, worker_env
from tests.unreachable_b2 import INTERNAL_API_KEY, REASON, SECRETS, unreachable_b2_env

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_start_up_failure_logs_its_reason_and_trace_with_no_secret(
    log_format: str, tiny_dir: Path, tmp_path: Path
) -> None:
    """B2 out of reach after the model loaded: rich's console traceback showed every frame's
    locals, B2's keys and the whole environment with them (its first ten variables: the
    credentials are first here, as a platform may well put them)."""
    with OrchestratorDouble(api_key=INTERNAL_API_KEY) as orch:
        env = worker_env(orch, tmp_path, tiny_dir, LOG_FORMAT=log_format)
        env = {"INTERNAL_API_KEY": INTERNAL_API_KEY, **unreachable_b2_env(), **env}
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            code = worker.wait(120)
    text = worker.log_path.read_text()

    assert code == 1, text[-3000:]  # a restart may help: B2 may be back
    assert "start-up failed: the model or the result store is not usable" in text
    assert f"B2Unreachable: {REASON}" in text
    assert "Traceback (most recent call last)" in text  # the trace is kept, its values are not
    assert [secret for secret in SECRETS if secret in text] == []
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        (failure,) = [line for line in lines if line["event"].startswith("start-up failed")]
        assert "B2Unreachable" in failure["exception"]
