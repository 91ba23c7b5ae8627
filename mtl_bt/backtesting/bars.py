"""Bars as the strategy sees them: read from a Backtrader feed's own lines.

A strategy must trade the bars Backtrader delivers, not a side channel: with
preloading (Backtrader's default) every line already holds the whole array
when the strategy starts, after the user's column mapping, ``datetime``
column, timezone and resampling filter were applied. :func:`preloaded_frame`
turns those arrays into the canonical frame (UTC ``DatetimeIndex`` from the
date numbers, float OHLCV); :func:`current_bar` reads one bar for the
streaming path. Both paths therefore see the same numbers for the same bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from mtl_bt.errors import DataError

OHLCV = ("open", "high", "low", "close", "volume")

#: Backtrader date number of 1970-01-01 00:00 UTC (proleptic ordinal of the epoch)
_EPOCH_NUM = 719163.0


def feed_name(data: bt.feed.DataBase) -> str:
    """The name the user gave the feed (``adddata(feed, name=...)`` or ``name=``), or ''."""
    return str(getattr(data, "_name", "") or "")


def feed_symbol(data: bt.feed.DataBase, i: int) -> str:
    """Symbol of feed ``i``: its Backtrader name, else ``data{i}`` (Backtrader's own label)."""
    return feed_name(data) or f"data{i}"


def datenum_micros(nums: np.ndarray | float) -> np.ndarray:
    """UTC epoch microseconds of Backtrader date numbers (float days), as ``bt.num2date``
    reads them: a float day number resolves ~10 us, so a time within 10 us of a whole
    second is snapped to it (an exact-second stamp comes back exact)."""
    nums = np.asarray(nums, dtype=np.float64)
    days = np.floor(nums)
    # the day and the time of day apart: the fraction keeps its full precision
    micros = (days - _EPOCH_NUM).astype(np.int64) * 86_400_000_000 + np.rint(
        (nums - days) * 86_400_000_000.0
    ).astype(np.int64)
    sub = micros % 1_000_000
    micros = np.where(sub < 10, micros - sub, micros)
    return np.where(sub > 999_990, micros + (1_000_000 - sub), micros)


def datenum_index(nums: np.ndarray) -> pd.DatetimeIndex:
    """UTC index of Backtrader date numbers (float days), as ``bt.num2date`` reads them."""
    index = pd.to_datetime(datenum_micros(nums), unit="us", utc=True).as_unit("us")
    return pd.DatetimeIndex(index, name="datetime")


def is_preloaded(strategy: bt.Strategy) -> bool:
    """True when Cerebro preloaded the feeds (its default): replay, live feeds,
    ``exactbars`` and ``preload=False`` all turn preloading off."""
    return bool(getattr(strategy.env, "_dopreload", False))


def preloaded_frame(data: bt.feed.DataBase, symbol: str) -> pd.DataFrame:
    """The canonical frame of a preloaded feed, built from its lines' arrays.

    Row ``i`` is the feed's bar ``i`` (``len(data) - 1`` while that bar is current).
    """
    nums = np.asarray(data.datetime.array, dtype=np.float64)
    n = len(nums)
    columns = {c: np.asarray(getattr(data, c).array, dtype=np.float64)[:n] for c in OHLCV}
    frame = pd.DataFrame(columns, index=datenum_index(nums))
    frame.attrs = {"symbol": symbol}
    return frame


def check_bars(frame: pd.DataFrame, symbol: str) -> None:
    """A feed's bars must be at least 2, strictly increasing in time, with finite prices > 0.

    Each failure is one DataError naming the feed. Zero spacing is the classic trap of an
    intraday file read by a daily feed (Backtrader stamps every bar at the session end).
    """
    from mtl_bt.backtesting.feeds import check_prices

    if len(frame) < 2:
        raise DataError(
            f"feed {symbol!r}: {len(frame)} bar(s); the strategy needs at least 2 "
            "(and enough for the features' warm-up)"
        )
    ns = frame.index.as_unit("ns").asi8
    step = np.diff(ns)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        what = "the same time as" if step[i - 1] == 0 else "an earlier time than"
        raise DataError(
            f"feed {symbol!r}: bar {i} ({frame.index[i]}) has {what} the bar before "
            "(zero spacing); for an intraday file give the feed timeframe= and compression= "
            "(else Backtrader reads it as daily bars stamped at the session end)"
        )
    check_prices(frame, f"feed {symbol!r}")


def replay_edge_micros(data: bt.feed.DataBase, symbol: str) -> int:
    """For a replayed feed, the bar length in microseconds (0 for any other feed).

    Backtrader replays a bar by updating it in place tick by tick; with its defaults
    (``bar2edge``, ``rightedge``) the bar is complete on the tick whose time reaches the
    bar's right edge, a multiple of the bar length for sizes that divide a day. The
    strategy decides only there. Larger replayed bars have no such edge: refused.
    """
    from mtl_bt.backtesting.calendar import stated_seconds

    if not getattr(data, "replaying", False):
        return 0
    seconds = stated_seconds(data)
    if seconds is None or seconds > 86400 or 86400 % seconds or seconds != int(seconds):
        raise DataError(
            f"feed {symbol!r}: replaydata to bars that do not divide a day: MTLStrategy "
            "decides only on completed bars and cannot tell when such a bar completes; "
            "use cerebro.resampledata (same bars, delivered complete)"
        )
    return int(seconds) * 1_000_000


def current_bar(data: bt.feed.DataBase) -> tuple[float, float, float, float, float, float]:
    """(UTC epoch microseconds, open, high, low, close, volume) of the feed's current bar."""
    return (
        float(datenum_micros(data.datetime[0])),
        float(data.open[0]),
        float(data.high[0]),
        float(data.low[0]),
        float(data.close[0]),
        float(data.volume[0]),
    )


def line_buffers(datas: Sequence[Any]) -> list[tuple[Any, Any]] | None:
    """``(datetime buffer, close buffer)`` of every feed, for per-bar reads without
    Backtrader's attribute and proxy calls: ``len(feed)`` is the datetime buffer's
    ``lencount`` (``LineSeries.__len__`` -> ``Lines.__len__`` -> ``LineBuffer.__len__``)
    and ``feed.close[0]`` is ``buf.array[buf.idx]`` (``LineBuffer.__getitem__``). None
    when any feed computes either in another way (then use ``len``/``close[0]``)."""
    from backtrader.linebuffer import LineBuffer
    from backtrader.lineseries import Lines, LineSeries

    out = []
    for d in datas:
        lines = getattr(d, "lines", None)
        if (
            not isinstance(lines, Lines)
            or type(d).__len__ is not LineSeries.__len__
            or type(lines).__len__ is not Lines.__len__
        ):
            return None
        pair = (lines.lines[0], getattr(lines, "close", None))
        for buf in pair:
            if (
                not isinstance(buf, LineBuffer)
                or type(buf).__len__ is not LineBuffer.__len__
                or type(buf).__getitem__ is not LineBuffer.__getitem__
            ):
                return None
        out.append(pair)
    return out
