"""Reading configuration from the environment, with errors that name the variable at fault.

Every app reads its settings through these helpers so that a bad value stops the worker at
start-up with ``"GPU_MEMORY_PROFILE must be one of ..., got 'huge'"`` rather than failing a
job later. Secrets are never echoed back.

Some variables have an alias, the name operators already set for the sibling worker
(``GPU_CLASS_NAME`` for ``GPU_CLASS``): :func:`env_name` picks which of the two is read, the
documented name first, so that an error names the variable that was actually used.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

__all__ = ["ConfigError", "env_bool", "env_choice", "env_float", "env_int", "env_name", "env_str"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class ConfigError(ValueError):
    """The worker cannot start: the message names the environment variable and what is wrong."""


def env_name(env: Mapping[str, str], name: str, *aliases: str) -> str:
    """``name`` if it is set (not blank), else the first alias that is, else ``name``."""
    for candidate in (name, *aliases):
        value = env.get(candidate)
        if value is not None and value.strip():
            return candidate
    return name


def env_str(
    env: Mapping[str, str], name: str, default: str | None = None, *, required: bool = False
) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        if required:
            raise ConfigError(f"{name} is required but not set")
        return default
    return value.strip()


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """A finite number (``nan`` and ``inf`` parse as floats, and pass every bound unnoticed)."""
    raw = env_str(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}, got {value:g}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/0, true/false, yes/no, on/off, got {raw!r}")


def env_choice(
    env: Mapping[str, str], name: str, choices: Collection[str], default: str | None = None
) -> str | None:
    raw = env_str(env, name)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(sorted(choices))}, got {raw!r}")
    return raw.lower()
