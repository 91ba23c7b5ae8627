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


#: a time of day followed by a UTC offset or Z: the value names an instant
_OFFSET = r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"


def _to_datetime(text: pd.Series, where: str, *, utc: bool) -> pd.Series:
    """ISO strings (any form pandas reads) -> datetimes; the first bad value named."""
    for fmt in ("ISO8601", "mixed"):
        try:
            return pd.Series(pd.to_datetime(text, format=fmt, utc=utc), index=text.index)
        except (ValueError, TypeError, OverflowError) as exc:
            error = exc
    for pos, value in enumerate(text):
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            row = int(text.index[pos]) if isinstance(text.index[pos], int | np.integer) else pos
            raise DataError(
                f"{where}: time value {value!r} is not a date/time (row {row}); use ISO "
                "strings (2024-01-01 12:00:00+00:00) or epoch milliseconds"
            ) from None
    raise DataError(
        f"{where}: time values are not dates/times ({error}); use ISO strings "
        "(2024-01-01 12:00:00+00:00) or epoch milliseconds"
    )


def _parse_strings(text: pd.Series, where: str, tz: str | None) -> pd.DatetimeIndex:
    """Strings -> UTC. A value with an offset is an instant (offsets may change with daylight
    saving, as pandas writes a New York index); a naive value is local time in ``tz``."""
    text = text.reset_index(drop=True)
    empty = text.isna() | (text == "")
    if empty.any():
        raise DataError(f"{where}: missing time value in row {int(np.argmax(empty.to_numpy()))}")
    aware = text.str.contains(_OFFSET, regex=True).to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        out[aware] = _to_datetime(text[aware], where, utc=True).dt.tz_convert("UTC")
    if (~aware).any():
        naive = _to_datetime(text[~aware], where, utc=False)
        if getattr(naive.dt, "tz", None) is None:
            naive = pd.Series(_localize(pd.DatetimeIndex(naive), tz, where), index=naive.index)
        out[~aware] = naive.dt.tz_convert("UTC")
    return pd.DatetimeIndex(out)


def _localize(index: pd.DatetimeIndex, tz: str | None, where: str) -> pd.DatetimeIndex:
    try:
        return index.tz_localize(tz or "UTC", ambiguous="raise", nonexistent="raise")
    except Exception as exc:  # unknown zone, DST-ambiguous local times
        raise DataError(f"{where}: cannot place naive times in time zone {tz!r}: {exc}") from None


#: epoch times outside this range are not times (a row number is "1970-01-01 00:00:05")
EPOCH_RANGE = (pd.Timestamp("1971-01-01"), pd.Timedelta(days=366))
EPOCH_UNITS = ("s", "ms", "us", "ns")


def _epoch_times(series, numbers, unit: str | None, where: str, column: object):
    """Epoch numbers -> times, only when they land in a plausible range (1971 .. a year
    from now): otherwise the column is no time column (row numbers, prices)."""
    if unit is not None and unit not in EPOCH_UNITS:
        raise ConfigError(f"time_unit {unit!r} must be one of {', '.join(EPOCH_UNITS)}")
    chosen = unit or _epoch_unit(numbers)
    name = f"column {str(column)!r}" if column is not None else "the index"
    try:
        index = pd.DatetimeIndex(pd.to_datetime(series.astype("int64"), unit=chosen))
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        index = None
    low, ahead = EPOCH_RANGE
    high = pd.Timestamp.now() + ahead
    if index is None or index.min() < low or index.max() > high:
        first, last = numbers.min(), numbers.max()
        raise DataError(
            f"{where}: no time column found: {name} holds numbers {first:g} .. {last:g}, which "
            f"as epoch {'seconds' if chosen == 's' else chosen} are not times between "
            f"{low.year} and {high.year} (row numbers?). Name the time column (date, datetime, "
            "time or timestamp, or the time_column option); for epoch numbers set time_unit "
            "(s, ms, us or ns)"
        )
    return index


def parse_times(
    values: pd.Series | pd.Index,
    *,
    symbol: str,
    tz: str | None = None,
    path: object = None,
    unit: str | None = None,
    column: object = None,
) -> pd.DatetimeIndex:
    """Epoch numbers (``unit``, else s/ms/us/ns by magnitude, in a plausible range) or ISO
    strings -> UTC index.

    Naive times are in ``tz`` (default UTC); strings with an offset are instants.
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
        index = _epoch_times(series, numbers, unit, where, column)
    else:
        index = _parse_strings(series.astype("string").str.strip(), where, tz)
    if index.tz is None:
        index = _localize(index, tz, where)
    return pd.DatetimeIndex(index.tz_convert("UTC"), name=INDEX_NAME)
