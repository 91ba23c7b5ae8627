"""Bar size and trading calendar -> periods per year (for annualising metrics).

Annualising hourly 24/7 crypto with 252 (a pitfall of the reference chapter)
understates its volatility by sqrt(8760/1638); here the calendar decides:
- ``"24/7"``: 365 days a year, 24 hours a day (crypto).
- ``"exchange"``: 252 sessions a year; intraday bars count the bars of a session
  (the median number of bars per UTC day of the data, e.g. 7 hourly bars 09:30-15:30 in a
  6.5-hour US session; from a bare timeframe string ceil(6.5 h / bar)); 52 weeks, 12 months.
- ``"forex"``: 24 hours a day, 5 days a week, 52 weeks (hourly: 24 x 5 x 52 = 6240; daily
  260): FX trades from Sunday evening to Friday evening UTC, and annualising it as 24/7
  made its Sharpe sqrt(8760/6240) = 1.18x too large.
- ``"auto"``: from the bars per UTC day (``auto_calendar``): any Saturday bar -> 24/7;
  else, over at least a week, a Sunday-evening stub (FX's open) or intraday bars filling
  whole weekdays -> forex; a full Sunday -> 24/7; else exchange. Daily weekday-only bars
  cannot tell FX from stocks: exchange (252).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import numpy as np
import pandas as pd

Calendar = Literal["auto", "24/7", "exchange", "forex"]
_CALENDARS = ("auto", "24/7", "exchange", "forex")

_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "t": 60,
    "h": 3600,
    "d": 86400,
    "b": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "me": 30 * 86400,
    "ms": 30 * 86400,
}
_DAY = 86400.0
_TIMEFRAME = re.compile(r"^\s*(\d*)\s*([a-zA-Z]+)\s*$")


def timeframe_seconds(timeframe: str) -> float:
    """Seconds per bar of a timeframe string: '1h', '15m', '1d', '1w', '1mo' (ccxt '1M')."""
    match = _TIMEFRAME.match(str(timeframe))
    if not match:
        raise ValueError(f"cannot read timeframe {timeframe!r}; expected e.g. 1h, 15m, 1d, 1w")
    count = int(match.group(1) or 1)
    unit = match.group(2)
    key = "mo" if unit == "M" else unit.lower()
    if key not in _UNIT_SECONDS:
        raise ValueError(f"unknown unit in timeframe {timeframe!r}; use s, m, h, d, w or mo")
    if count < 1:
        raise ValueError(f"timeframe {timeframe!r} must be positive")
    return float(count * _UNIT_SECONDS[key])


def index_seconds(index: pd.DatetimeIndex) -> float:
    """Most common spacing of the index in seconds (weekend/holiday gaps do not count)."""
    if len(index) < 2:
        raise ValueError("need at least 2 bars to infer the bar size")
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_convert(None)
    ns = idx.as_unit("ns").asi8
    diffs = np.diff(ns).astype(np.float64) / 1e9
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise ValueError("index has no positive spacing")
    values, counts = np.unique(np.round(diffs, 3), return_counts=True)
    return float(values[np.argmax(counts)])


def has_weekend_bars(index: pd.DatetimeIndex) -> bool:
    """True when any bar falls on a Saturday or Sunday (UTC): a 24/7 market."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC")
    return bool((idx.day_of_week >= 5).any())


def auto_calendar(days: np.ndarray, counts: np.ndarray, seconds: float) -> str:
    """``calendar="auto"`` resolved from bars per UTC day (``days``: days since 1970-01-01,
    ``counts``: bars on each).

    A Saturday bar -> "24/7" (crypto). Over at least a week of days (else a Saturday may
    just not have come yet): Sunday bars but no Saturday one, where an intraday Sunday is a
    stub (FX opens Sunday evening: under half a day's bars), or intraday bars filling whole
    weekdays (median over Monday-Friday of at least 90% of a day's bars) -> "forex". Any
    other Sunday bar -> "24/7"; else "exchange".
    """
    days = np.asarray(days, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.float64)
    if days.size == 0:
        return "exchange"
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    if (weekday == 5).any():
        return "24/7"
    week = int(days.max() - days.min()) + 1 >= 7
    per_day = _DAY / seconds
    sunday = counts[weekday == 6]
    if sunday.size:
        stub = seconds >= _DAY or float(sunday.max()) < 0.5 * per_day
        return "forex" if week and stub else "24/7"
    on_weekdays = counts[weekday < 5]
    if week and seconds < _DAY and float(np.median(on_weekdays)) >= 0.9 * per_day:
        return "forex"
    return "exchange"


def index_calendar(index: pd.DatetimeIndex, seconds: float) -> str:
    """``auto_calendar`` of a bar index (UTC days)."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    days = idx.as_unit("ns").asi8 // (86_400 * 10**9)
    unique, counts = np.unique(days, return_counts=True)
    return auto_calendar(unique, counts, seconds)


def bars_per_session(index: pd.DatetimeIndex) -> int:
    """Median number of bars per UTC calendar day of an intraday exchange index: a 6.5-hour
    session has 7 hourly bars (09:30 ... 15:30), not 6.5."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC")
    counts = pd.Series(1, index=idx).groupby(idx.normalize()).size()
    return max(1, int(round(float(counts.median()))))


def periods_per_year(
    index_or_timeframe: pd.DatetimeIndex | str, calendar: Calendar = "auto"
) -> float:
    """Bars per year for the bar size and calendar: 252 daily stocks, 365 daily crypto,
    8760 hourly crypto, 1764 hourly stocks (252 sessions x 7 bars), 52 weekly, 12 monthly.

    ``calendar="auto"`` needs an index (``auto_calendar``); with a bare timeframe string
    pass "24/7", "exchange" or "forex".
    """
    _check_calendar(calendar)
    if isinstance(index_or_timeframe, str):
        seconds = timeframe_seconds(index_or_timeframe)
        if calendar == "auto":
            raise ValueError(
                "calendar='auto' needs the bars' index to look for weekend bars; "
                "pass calendar='24/7', 'exchange' or 'forex' with a timeframe string"
            )
        per_session = math.ceil(6.5 * 3600.0 / seconds - 1e-9)
    else:
        index = pd.DatetimeIndex(index_or_timeframe)
        seconds = index_seconds(index)
        if calendar == "auto":
            calendar = index_calendar(index, seconds)  # type: ignore[assignment]
        per_session = bars_per_session(index) if seconds < _DAY else 1
    return seconds_per_year(seconds, calendar, per_session)


def _check_calendar(calendar: str) -> None:
    if calendar not in _CALENDARS:
        raise ValueError(
            f"calendar must be 'auto', '24/7', 'exchange' or 'forex', not {calendar!r}"
        )


def seconds_per_year(seconds: float, calendar: Calendar, per_session: int | None = None) -> float:
    """Bars per year of ``seconds``-long bars on a resolved calendar ("24/7", "exchange" or
    "forex").

    ``per_session`` is the number of intraday bars in one exchange session (counted from the
    bars when known); without it a 6.5-hour session is assumed (7 hourly bars).
    """
    if not seconds > 0:
        raise ValueError(f"bar size must be > 0 seconds, got {seconds}")
    if per_session is None:
        per_session = math.ceil(6.5 * 3600.0 / seconds - 1e-9)
    if calendar == "24/7":
        return 365.0 * _DAY / seconds
    if calendar == "forex" and seconds < 7 * _DAY:
        return 5.0 * 52.0 * _DAY / seconds  # 24 hours x 5 days x 52 weeks
    if seconds < _DAY:
        return 252.0 * per_session
    if seconds < 7 * _DAY:
        return 252.0 * _DAY / seconds
    if seconds < 28 * _DAY:
        return 52.0 * 7 * _DAY / seconds
    return 12.0 * 30 * _DAY / seconds


def bt_timeframe(seconds: float) -> tuple[int, int]:
    """(backtrader TimeFrame, compression) for a bar size, so bt analyzers annualise right."""
    import backtrader as bt

    s = int(round(seconds))
    if s >= 28 * 86400:
        return bt.TimeFrame.Months, max(1, round(s / (30 * 86400)))
    if s >= 7 * 86400 and s % (7 * 86400) == 0:
        return bt.TimeFrame.Weeks, s // (7 * 86400)
    if s >= 86400 and s % 86400 == 0:
        return bt.TimeFrame.Days, s // 86400
    if s >= 60 and s % 60 == 0:
        return bt.TimeFrame.Minutes, s // 60
    return bt.TimeFrame.Seconds, max(1, s)


#: seconds per unit of backtrader's TimeFrame (Ticks count as seconds)
_BT_UNIT_SECONDS = {
    "Ticks": 1.0,
    "MicroSeconds": 1e-6,
    "Seconds": 1.0,
    "Minutes": 60.0,
    "Days": _DAY,
    "Weeks": 7 * _DAY,
    "Months": 30 * _DAY,
    "Years": 365 * _DAY,
}


def stated_seconds(data: object) -> float | None:
    """Bar size a Backtrader feed states (timeframe x compression), or None.

    Every feed reports Backtrader's default (Days, 1) whether or not the user set it, so
    that pair states nothing: the bars' spacing decides. A resampler or an explicit
    ``timeframe=``/``compression=`` states the size.
    """
    import backtrader as bt

    tf = getattr(data, "_timeframe", None)
    comp = int(getattr(data, "_compression", 1) or 1)
    if tf is None or (tf == bt.TimeFrame.Days and comp == 1):
        return None
    name = bt.TimeFrame.getname(tf, 1)
    unit = _BT_UNIT_SECONDS.get(str(name).rstrip("s") + "s") or _BT_UNIT_SECONDS.get(str(name))
    return None if unit is None else unit * comp


def feed_periods_per_year(
    data: object, index: pd.DatetimeIndex, calendar: Calendar, symbol: str
) -> float:
    """Bars per year of one feed: its stated bar size, else its bars' spacing; the
    calendar from ``calendar`` ("auto": weekend bars in ``index``). A feed whose size
    cannot be told (fewer than 2 bars, no positive spacing) is a DataError naming it."""
    _check_calendar(calendar)
    seconds = feed_bar_seconds(data, index, symbol)
    if calendar == "auto":
        calendar = index_calendar(index, seconds)  # type: ignore[assignment]
    per_session = bars_per_session(index) if seconds < _DAY and len(index) > 1 else None
    return seconds_per_year(seconds, calendar, per_session)


def feed_bar_seconds(data: object, index: pd.DatetimeIndex, symbol: str) -> float:
    """Seconds per bar of one feed: its stated bar size, else its bars' most common spacing.
    A feed whose size cannot be told (fewer than 2 bars, no positive spacing) is a DataError
    naming it."""
    from mtl_bt.errors import DataError

    seconds = stated_seconds(data)
    if seconds is None:
        if len(index) < 2:
            raise DataError(
                f"feed {symbol!r}: {len(index)} bar(s), so its bar size cannot be told; "
                "give the feed timeframe= and compression= or more bars"
            )
        try:
            seconds = index_seconds(index)
        except ValueError:
            raise DataError(
                f"feed {symbol!r}: all {len(index)} bars have the same time (zero spacing); "
                "for intraday files give the feed timeframe= and compression="
            ) from None
    return seconds
