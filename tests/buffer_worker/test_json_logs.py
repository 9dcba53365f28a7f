"""``LOG_FORMAT=json`` in a buffer worker's own process: every line it writes is one JSON object,
from the first, the libraries' warnings included (transformers wrote ``[transformers] ...``)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from fastwan_adapters.testing import OrchestratorDouble

from .harness import START_TIMEOUT_S, WorkerProcess, ready, wait_until, worker_env

pytestmark = pytest.mark.slow


def not_json(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        try:
            json.loads(line)
        except ValueError:
            lines.append(line)
    return [line for line in lines if line.strip()]


def test_a_start_and_a_stop_write_only_json_lines(
    orch: OrchestratorDouble, tiny_dir: Path, tmp_path: Path
) -> None:
    env = worker_env(orch, tmp_path, tiny_dir, LOG_FORMAT="json")
    with WorkerProcess(env, tmp_path / "w.log") as worker:
        wait_until(orch, ready, worker, START_TIMEOUT_S, "the first claim")
        worker.signal(signal.SIGTERM)
        code = worker.wait(60)
        text = worker.log_path.read_text()

    assert code == 0, text[-3000:]
    assert not_json(text) == []
