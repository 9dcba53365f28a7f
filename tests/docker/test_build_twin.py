"""docker/build_twin.sh without what it needs: a message and a skip on a workstation, a failure
under CI, as the shell-lint tests do. Run against stub ``id`` programs on a PATH that holds no
buildah, debootstrap or apt-get, so nothing is installed or built."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "build_twin.sh"


def run_without_tools(tmp_path: Path, uid: int, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the script"
        (bin_dir / tool).symlink_to(found)
    stub = bin_dir / "id"
    stub.write_text(f"#!{shutil.which('bash')}\necho {uid}\n")
    stub.chmod(0o755)
    return subprocess.run(
        [str(SCRIPT)],
        env={"PATH": str(bin_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(("uid", "reason"), [(1000, "needs root"), (0, "no apt-get")])
def test_missing_tools_skip_the_image_outside_ci(tmp_path: Path, uid: int, reason: str) -> None:
    result = run_without_tools(tmp_path, uid)

    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr
    assert reason in result.stderr


@pytest.mark.parametrize(("uid", "reason"), [(1000, "needs root"), (0, "no apt-get")])
def test_missing_tools_fail_the_image_under_ci(tmp_path: Path, uid: int, reason: str) -> None:
    result = run_without_tools(tmp_path, uid, CI="true")

    assert result.returncode == 1
    assert "error" in result.stderr
    assert reason in result.stderr
