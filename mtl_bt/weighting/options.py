"""Option parsing for weighting schemes: one place that turns a config's
``[weighting.options]`` table into checked values, so every scheme reports a
wrong key or an out-of-range value the same way (scheme, key, allowed range)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mtl_bt.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One accepted option: its default, a check, and the range shown in errors."""

    default: Any
    allowed: str
    check: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def real(
    default: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Option:
    """A finite float within [lo, hi] (open ends where asked)."""
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(value: Any) -> bool:
        if not _is_number(value) or not math.isfinite(value):
            return False
        if lo is not None and (value <= lo if lo_open else value < lo):
            return False
        return not (hi is not None and (value >= hi if hi_open else value > hi))

    return Option(default, allowed, check, float)


def integer(default: int | None, lo: int = 0, *, optional: bool = False) -> Option:
    """An integer >= lo (or None when ``optional``)."""
    allowed = f"an integer >= {lo}" + (" or omitted" if optional else "")

    def check(value: Any) -> bool:
        if value is None:
            return optional
        return isinstance(value, int) and not isinstance(value, bool) and value >= lo

    return Option(default, allowed, check)


def choice(default: Any, *values: Any) -> Option:
    """One of a fixed set of values."""
    allowed = "one of " + ", ".join(repr(v) for v in values)
    return Option(default, allowed, lambda value: value in values)


def boolean(default: bool) -> Option:
    return Option(default, "true or false", lambda value: isinstance(value, bool))


def seed(default: int = 0) -> Option:
    """Seed of the scheme's own ``torch.Generator`` (deterministic under it)."""
    return integer(default, 0)


def parse_options(
    scheme: str, options: Mapping[str, Any], spec: Mapping[str, Option]
) -> dict[str, Any]:
    """Check ``options`` against ``spec``; return every option with defaults filled in.

    Raises ConfigError naming the scheme, the key and the allowed range.
    """
    unknown = sorted(set(options) - set(spec))
    if unknown:
        listing = (
            "; ".join(
                f"{key} ({opt.allowed}, default {opt.default!r})" for key, opt in spec.items()
            )
            or "none"
        )
        raise ConfigError(
            f"weighting {scheme!r}: unknown option(s) {unknown}; accepted options: {listing}"
        )
    out: dict[str, Any] = {}
    for key, opt in spec.items():
        if key not in options:
            out[key] = opt.default
            continue
        value = options[key]
        if not opt.check(value):
            raise ConfigError(
                f"weighting {scheme!r}: option {key} = {value!r} is out of range; "
                f"allowed: {opt.allowed} (default {opt.default!r})"
            )
        out[key] = opt.convert(value)
    return out
