"""A stand-in for Salad's job-queue binary (``salad-http-job-queue-worker`` v0.5/v0.6), as far as
the entrypoint's drain needs one: it posts each job of ``STAND_IN_JOBS`` (a JSON list of bodies)
to ``localhost:$PORT/generate`` once ``/ready`` answers 200, one at a time, and writes what
happened to ``STAND_IN_RECORD`` (one JSON object a line).

What it copies from the real one (``internal/workers/workers.go``): a stop signal cancels its
context, which drops the request in flight (``dropped``) and any completion not yet sent; an
answer is "completed" (or "rejected": 408, 429, any 5xx) only by a call made after it, while
the binary still runs, which takes ``STAND_IN_REPORT_S`` here. Jobs come from the queue, so
with none left it waits for more, as the real one does, until it is signalled.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

_RETRIED = frozenset({408, 429})


def main() -> None:
    stopped = threading.Event()
    record = Path(os.environ["STAND_IN_RECORD"])
    port = int(os.environ.get("PORT", "8000"))
    report_s = float(os.environ.get("STAND_IN_REPORT_S", "0.5"))
    jobs: list[dict[str, Any]] = json.loads(Path(os.environ["STAND_IN_JOBS"]).read_text())
    in_flight: list[http.client.HTTPConnection] = []

    def write(**entry: object) -> None:
        with record.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def on_signal(signum: int, _frame: object) -> None:
        stopped.set()
        for connection in in_flight:  # the context is cancelled: the request in flight is dropped
            if connection.sock is not None:
                connection.sock.shutdown(socket.SHUT_RDWR)
        write(event="signal", signal=signal.Signals(signum).name, dropped=bool(in_flight))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    write(event="started", pid=os.getpid())

    while not stopped.is_set() and not _ready(port):
        stopped.wait(0.1)
    for job in jobs:
        if stopped.is_set():
            break
        connection = http.client.HTTPConnection("localhost", port, timeout=None)
        in_flight.append(connection)
        job_id = job.get("musetalk_job_id")
        try:
            connection.request(
                "POST",
                "/generate",
                json.dumps(job),
                {"Content-Type": "application/json", "Salad-Job-Id": "s-1"},
            )
            answer = connection.getresponse()
            status, body = answer.status, json.loads(answer.read() or b"null")
        except OSError:
            write(event="dropped", job=job_id)
            break
        finally:
            in_flight.remove(connection)
            connection.close()
        write(event="answered", job=job_id, status=status, body=body)
        if stopped.wait(report_s):  # the completion call, cut short by a signal
            write(event="unreported", job=job_id)
            break
        outcome = "rejected" if status >= 500 or status in _RETRIED else "completed"
        write(event=outcome, job=job_id)
    stopped.wait()  # no more jobs: wait for the queue, or the signal
    sys.exit(0)


def _ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("localhost", port, timeout=2)
        connection.request("GET", "/ready")
        ready = connection.getresponse().status == 200
        connection.close()
    except OSError:
        return False
    return ready


if __name__ == "__main__":
    main()
