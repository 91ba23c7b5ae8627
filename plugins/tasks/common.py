"""Option validation shared by the built-in tasks."""

from __future__ import annotations

import math
from typing import Any

from mtl_bt.errors import ConfigError


def number(task: str, key: str, value: Any, *, minimum: float = 0.0, strict: bool = True) -> float:
    """A finite number > minimum (>= when not strict), or a ConfigError naming task and key."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        op = ">" if strict else ">="
        raise ConfigError(f"task {task}: option {key} = {value!r} must be a number {op} {minimum}")
    return float(value)


def integer(task: str, key: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"task {task}: option {key} = {value!r} must be an integer >= {minimum}")
    return value


def choice(task: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(
            f"task {task}: option {key} = {value!r} must be one of {', '.join(choices)}"
        )
    return str(value)
