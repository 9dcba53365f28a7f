"""A short chaos run in CI (issue 21): two buffer workers under the real supervisor and two queue
nodes behind the Salad double, 40 jobs, a fixed seed; the long run is ``make chaos``.

Whatever the run breaks, its output names the job and the rule; the assertion shows the end of
it, and the run's folder (logs of every process, ``faults.txt``, ``rss.tsv``) is kept under the
test's ``tmp_path``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from chaos_checks import Violation
from chaos_report import Verdict, last_line

BENCH = Path(__file__).resolve().parents[2] / "bench"
SEED = "21"
LAST_LINE = re.compile(
    r"chaos: seed (?P<seed>\d+), (?P<jobs>\d+) jobs, (?P<k>\d+)\+(?P=k) workers, (?P<faults>\d+) faults, "
    r"(?P<kills>\d+) kills: lost (?P<lost>\d+), contradictions (?P<contradictions>\d+), "
    r"re-runs (?P<reruns>\d+), other violations (?P<other>\d+), completed (?P<completed>\d+), .*"
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_short_chaos_run_loses_no_job_and_contradicts_no_end(tiny_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, str(BENCH / "chaos.py"), "--seed", SEED, "--jobs", "40", "--workers", "2"]
    command += ["--tiny-dir", str(tiny_dir), "--keep", str(tmp_path / "run")]

    done = subprocess.run(command, capture_output=True, text=True, timeout=850, check=False)

    output = done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"{output[-8000:]}\n(the run's folder: {tmp_path / 'run'})"
    found = LAST_LINE.fullmatch(last)
    assert found is not None, last
    numbers = {name: int(value) for name, value in found.groupdict().items()}
    assert (numbers["seed"], numbers["jobs"], numbers["k"]) == (21, 40, 2)
    assert (numbers["lost"], numbers["contradictions"], numbers["other"]) == (0, 0, 0)
    assert numbers["completed"] == 40
    assert numbers["kills"] >= 2  # the schedule always kills a buffer worker and a queue node
    late = re.search(r"\| - late \(12-20 s\) \| (\d+)", done.stdout)
    assert late is not None and int(late.group(1)) >= 1, "no late restart: the known bug would go unseen"


def test_the_last_line_counts_what_was_lost_and_contradicted_and_the_run_fails() -> None:
    lost = Violation("b-s1-b0002 (s1-b0002, buffer)", "lost", "ended queued after 2 claim(s)")
    contradicted = Violation("q (s1-q0001, queue)", "contradiction: final word contradicted", "x after y")
    other = Violation("chaos-gpu0", "heartbeat gap within twice the interval", "3.1 s")
    verdict = Verdict([lost, contradicted, other], [], [], {}, {"lease expired": 2}, [12.0])  # type: ignore[arg-type]
    outcome = types.SimpleNamespace(
        seed=1,
        workers=2,
        planned=[object()] * 10,
        seconds=60.0,
        injector=types.SimpleNamespace(applied={"orchestrator outage": 3}, kills={"buffer inference": 2}),
    )

    line = last_line(outcome, verdict)  # type: ignore[arg-type]

    assert not verdict.ok
    assert line == (
        "chaos: seed 1, 10 jobs, 2+2 workers, 3 faults, 2 kills: lost 1, contradictions 1, re-runs 2, "
        "other violations 1, completed 9, 9.0 jobs/min, RSS growth max 12 MiB"
    )
    assert LAST_LINE.fullmatch(line)
