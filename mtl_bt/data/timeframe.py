"""Bar sizes and time bounds: one parser so every source agrees on "1h" and "2024-01-01"."""

from __future__ import annotations

import re
from datetime import date, datetime

import numpy as np
import pandas as pd

from mtl_bt.data.source import INDEX_NAME
from mtl_bt.errors import ConfigError, DataError

_UNITS = {"s": "s", "m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}
_TF = re.compile(r"^\s*(\d+)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)


def parse_timeframe(timeframe: str) -> pd.Timedelta:
    """``"1h"`` -> ``Timedelta('1h')``; minutes are ``m``/``min`` (``M`` months are refused)."""
    match = _TF.match(str(timeframe)) if timeframe is not None else None
    if not match or int(match.group(1)) < 1:
        raise ConfigError(
            f"timeframe {timeframe!r} is not understood; use a number and a unit, "
            "e.g. 1m, 5m, 15m, 1h, 4h, 1d, 1w"
        )
    if match.group(2) == "M":
        raise ConfigError(f"timeframe {timeframe!r}: monthly bars are not supported")
    unit = _UNITS[match.group(2).lower()]
    return pd.Timedelta(int(match.group(1)), unit=unit)


def format_timeframe(delta: pd.Timedelta) -> str:
    """The canonical string of a bar size: ``Timedelta('1h')`` -> ``"1h"``."""
    seconds = int(pd.Timedelta(delta).total_seconds())
    if seconds <= 0:
        raise ValueError(f"bar size must be positive, got {delta}")
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def normalise_timeframe(timeframe: str | None) -> str | None:
    """``"60min"`` -> ``"1h"``, ``"1D"`` -> ``"1d"``; ``None`` stays ``None``."""
    if timeframe is None:
        return None
    return format_timeframe(parse_timeframe(timeframe))


def parse_time(value: str | date | datetime | pd.Timestamp | int | None, what: str = "time"):
    """A UTC ``Timestamp`` from an ISO string, date, datetime or epoch ms; naive means UTC."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            stamp = pd.Timestamp(int(value), unit="ms")
        else:
            stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{what} {value!r} is not a date/time; use ISO format, e.g. 2024-01-01 or "
            "2024-01-01T12:00:00Z"
        ) from exc
    if stamp is pd.NaT:
        raise ConfigError(f"{what} {value!r} is not a date/time")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def closed_before(now: pd.Timestamp, timeframe: str) -> pd.Timestamp:
    """Latest bar start whose bar has closed at ``now`` (bars starting after it are forming)."""
    return now - parse_timeframe(timeframe)


def drop_forming(frame: pd.DataFrame, timeframe: str | None, now: pd.Timestamp) -> pd.DataFrame:
    """Bars that have not closed yet change until they close; never let them into results."""
    if timeframe is None or frame.empty:
        return frame
    return frame[frame.index <= closed_before(now, timeframe)]


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _epoch_unit(values: np.ndarray) -> str:
    """Seconds, ms, us or ns from the magnitude (ms since 1973 is > 1e11)."""
    largest = float(np.nanmax(np.abs(values))) if values.size else 0.0
    if largest >= 1e17:
        return "ns"
    if largest >= 1e14:
        return "us"
    if largest >= 1e11:
        return "ms"
    return "s"


def parse_times(
    values: pd.Series | pd.Index, *, symbol: str, tz: str | None = None, path: object = None
) -> pd.DatetimeIndex:
    """Epoch numbers (s/ms/us/ns by magnitude) or ISO strings -> UTC index.

    Naive times are in ``tz`` (default UTC); strings with an offset keep it.
    """
    where = f"symbol {symbol!r}" + (f" (file {path})" if path is not None else "")
    series = pd.Series(values)
    if isinstance(values, pd.DatetimeIndex) or pd.api.types.is_datetime64_any_dtype(series.dtype):
        index = pd.DatetimeIndex(series)
    elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series):
        numbers = series.to_numpy(dtype="float64")
        if np.isnan(numbers).any():
            raise DataError(
                f"{where}: missing time value in row {int(np.argmax(np.isnan(numbers)))}"
            )
        index = pd.DatetimeIndex(pd.to_datetime(series.astype("int64"), unit=_epoch_unit(numbers)))
    else:
        text = series.astype("string").str.strip()
        try:
            parsed = pd.to_datetime(text, format="ISO8601")
        except (ValueError, TypeError):
            try:
                parsed = pd.to_datetime(text)
            except (ValueError, TypeError) as exc:
                coerced = pd.to_datetime(text, errors="coerce", format="mixed")
                bad = coerced.isna().to_numpy()
                first = text.iloc[int(np.argmax(bad))] if bad.any() else "?"
                raise DataError(
                    f"{where}: time value {first!r} is not a date/time ({exc}); use ISO "
                    "strings (2024-01-01 12:00:00+00:00) or epoch milliseconds"
                ) from None
        if parsed.isna().any():
            raise DataError(
                f"{where}: missing time value in row {int(np.argmax(parsed.isna().to_numpy()))}"
            )
        index = pd.DatetimeIndex(parsed)
    if index.tz is None:
        try:
            index = index.tz_localize(tz or "UTC", ambiguous="raise", nonexistent="raise")
        except Exception as exc:  # unknown zone, DST-ambiguous local times
            raise DataError(
                f"{where}: cannot place naive times in time zone {tz!r}: {exc}"
            ) from None
    return pd.DatetimeIndex(index.tz_convert("UTC"), name=INDEX_NAME)
