"""The environment readers every setting goes through."""

from __future__ import annotations

import pytest

from fastwan_adapters.config import ConfigError, env_float


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e400"])
def test_a_float_setting_that_is_not_finite_is_named(raw: str) -> None:
    # float() takes them, and nan passes every bound check: once, SHUTDOWN_GRACE_S=nan started.
    with pytest.raises(ConfigError, match=f"SHUTDOWN_GRACE_S must be a number, got {raw!r}"):
        env_float({"SHUTDOWN_GRACE_S": raw}, "SHUTDOWN_GRACE_S", 25.0, minimum=0.0)


def test_a_float_setting_is_kept_within_its_bounds() -> None:
    env = {"X_S": "2.5"}
    assert env_float(env, "X_S", 1.0, minimum=0.0, maximum=3.0) == 2.5
    assert env_float({}, "X_S", 1.0, maximum=3.0) == 1.0
    with pytest.raises(ConfigError, match=r"X_S must be at most 2, got 2\.5"):
        env_float(env, "X_S", 1.0, maximum=2.0)
