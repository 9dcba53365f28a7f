"""Running the CPU twin of the image (``make image``) with buildah, as Docker runs the real one.

``buildah from`` makes a working container of the image, and ``buildah run --isolation chroot``
runs a command in it as the image's user, on the host's network: a server inside answers on
127.0.0.1, and the orchestrator double outside is reachable from inside. ``podman run`` cannot
run here (crun cannot set RLIMIT_NOFILE), and ``buildah run`` ignores ENTRYPOINT and HEALTHCHECK,
so the tests read both from the image and run them as Docker would.

The container's processes are not in a PID namespace of their own: each run is given a marker
variable, so the tests can find its processes in /proc, check their user and signal ``tini``
as ``docker stop`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

IMAGE = os.environ.get("TWIN_IMAGE", "localhost/fastwan-worker-twin:latest")
MARKER = "FASTWAN_TWIN_RUN"


def unavailable(message: str) -> None:
    """Skip outside CI; fail under CI, where a missing image must not pass silently."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so the image tests cannot be skipped)")
    pytest.skip(f"{message}; build it with `make image`")


class Twin:
    """The built image: its configuration, and working containers made from it."""

    def __init__(self, image: str, config: Mapping[str, Any]) -> None:
        self.image = image
        self.config = config

    @property
    def user(self) -> str:
        return str(self.config["User"])

    @property
    def entrypoint(self) -> list[str]:
        return list(self.config["Entrypoint"])

    @property
    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK command, as Docker runs it (``CMD`` form)."""
        test = list(self.config["Healthcheck"]["Test"])
        assert test[0] == "CMD", f"HEALTHCHECK {test}: expected the CMD form"
        return test[1:]

    def new_container(self) -> str:
        name = f"fastwan-twin-test-{uuid.uuid4().hex[:12]}"
        subprocess.run(["buildah", "from", "--name", name, self.image], check=True, capture_output=True)
        return name

    def remove_container(self, name: str) -> None:
        subprocess.run(["buildah", "rm", name], check=False, capture_output=True)

    def mountpoint(self, container: str) -> Path:
        """The container's root file system on the host (to read what the worker wrote)."""
        out = subprocess.run(["buildah", "mount", container], check=True, capture_output=True, text=True)
        return Path(out.stdout.strip())

    def command(self, container: str, *args: str, env: Mapping[str, str] | None = None) -> list[str]:
        """``buildah run`` of ``args`` as the image's user, with ``env`` on top of the image's."""
        env_options = [option for key, value in (env or {}).items() for option in ("-e", f"{key}={value}")]
        return [
            "buildah",
            "run",
            "--isolation",
            "chroot",
            "--user",
            self.user,
            *env_options,
            container,
            "--",
            *args,
        ]

    def run(
        self, container: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(container, *args, env=env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def twin_or_skip() -> Twin:
    if os.geteuid() != 0:
        unavailable("running the image with buildah needs root")
    if shutil.which("buildah") is None:
        unavailable("buildah is not installed")
    found = subprocess.run(
        ["buildah", "inspect", "--type", "image", IMAGE], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        unavailable(f"no image {IMAGE} in buildah's storage")
    inspected = json.loads(found.stdout)
    # The Docker format (build_twin.sh builds it) keeps HEALTHCHECK, which OCI's drops.
    return Twin(IMAGE, inspected["Docker"]["config"])


class Running:
    """The image's ENTRYPOINT running in a container, as ``docker run`` starts it."""

    def __init__(self, twin: Twin, container: str, env: Mapping[str, str], log_path: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.first_program = twin.entrypoint[0]
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            twin.command(container, *twin.entrypoint, env={**env, MARKER: self.marker}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *_exc: object) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self._log.close()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def pids(self) -> list[int]:
        """The processes of this run inside the container (those with its marker)."""
        needle = f"{MARKER}={self.marker}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def tini_pid(self) -> int:
        """The container's first process, which ``docker stop`` signals."""
        for pid in self.pids():
            if command_line(pid)[:1] == [self.first_program]:
                return pid
        raise AssertionError(f"no {self.first_program} process in the container\n{self.log()}")

    def stop(self, timeout: float) -> tuple[int, float]:
        """SIGTERM to tini, as ``docker stop`` sends it; the exit status and seconds it took."""
        started = time.monotonic()
        os.kill(self.tini_pid(), signal.SIGTERM)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the container did not exit within {timeout} s of SIGTERM\n{self.log()}"
            ) from None
        return status, time.monotonic() - started


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and file-system uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(field) for field in line.split()[1:])
    raise AssertionError(f"no Uid line for pid {pid}")
