"""One exit status per meaning, for both workers and the supervisor, as the README's table says."""

from __future__ import annotations

import re
from pathlib import Path

from fastwan_adapters.config import ConfigError
from fastwan_adapters.exit_code import ExitCode
from fastwan_adapters.generator import ModelDownloadFailed, NoGpuError
from fastwan_adapters.storage import B2Unreachable

README = Path(__file__).resolve().parents[2] / "README.md"


def test_a_setting_to_fix_is_config_and_anything_else_at_start_up_is_a_restart() -> None:
    assert ExitCode.for_startup_failure(ConfigError("STATE_DIR is not usable")) is ExitCode.CONFIG
    assert ExitCode.for_startup_failure(NoGpuError("no CUDA GPU")) is ExitCode.CONFIG
    assert ExitCode.for_startup_failure(ModelDownloadFailed("the Hub answered 503")) is ExitCode.RESTART
    assert ExitCode.for_startup_failure(B2Unreachable("no route to B2")) is ExitCode.RESTART
    assert ExitCode.for_startup_failure(RuntimeError("CUDA error at load")) is ExitCode.RESTART


def test_the_readme_lists_every_exit_code_with_its_value() -> None:
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", README.read_text(), flags=re.MULTILINE)

    assert {name: int(value) for value, name in rows} == {code.name: code.value for code in ExitCode}
