"""A fast Backtrader feed over a canonical frame.

Why not ``bt.feeds.PandasData``: it reads every bar with ``DataFrame.iloc``
(slow) and crashes on MultiIndex columns. ``FrameFeed`` copies the columns to
numpy once, converts the UTC index to Backtrader date numbers once (with
Backtrader's own ``date2num`` so the numbers equal those of any other feed for
the same instant), and ``_load`` only copies six floats per bar.

Time zone: canonical frames are UTC; the feed hands Backtrader UTC date
numbers, so ``data.datetime.datetime(0)`` is the naive UTC time of the bar.

The extra line ``bar`` is the row number of the bar in the source frame: the
strategy uses it to look up features precomputed causally for that row.
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd

from mtl_bt.backtesting.calendar import bt_timeframe, timeframe_seconds
from mtl_bt.errors import DataError

_OHLCV = ("open", "high", "low", "close", "volume")


def _utc_index(frame: pd.DataFrame, symbol: str) -> pd.DatetimeIndex:
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"{symbol}: frame index must be a DatetimeIndex, got {type(index).__name__}"
        )
    if index.tz is None:
        raise DataError(f"{symbol}: frame index is naive; canonical frames are tz-aware UTC")
    index = index.tz_convert("UTC")
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise DataError(f"{symbol}: frame index must be sorted and unique")
    return index


def bt_datenums(index: pd.DatetimeIndex) -> np.ndarray:
    """Backtrader date numbers (UTC float days) of a tz-aware index, exactly as bt computes them."""
    naive = pd.DatetimeIndex(index).tz_convert("UTC").tz_localize(None)
    num = bt.utils.date.date2num
    return np.fromiter(
        (num(ts) for ts in naive.to_pydatetime()), dtype=np.float64, count=len(naive)
    )


def frame_symbol(frame: pd.DataFrame, default: str = "") -> str:
    return str(frame.attrs.get("symbol") or default)


class FrameFeed(bt.feed.DataBase):
    """Backtrader feed reading a canonical OHLCV frame from numpy arrays.

    Build it with :func:`frame_feed` (which also sets ``timeframe`` and
    ``compression`` from the data). ``self.frame`` keeps the source frame and
    ``self.datenums`` the bt date number of every row.
    """

    lines = ("bar",)

    def __init__(self) -> None:
        frame = self.p.dataname
        if not isinstance(frame, pd.DataFrame):
            raise DataError("FrameFeed needs a canonical pandas DataFrame as dataname")
        symbol = self.p.name or frame_symbol(frame)
        missing = [c for c in _OHLCV if c not in frame.columns]
        if missing:
            raise DataError(f"{symbol}: frame lacks column(s) {missing}")
        self.frame = frame
        self.symbol = symbol
        self.datenums = bt_datenums(_utc_index(frame, symbol))
        self._cols = [np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in _OHLCV]
        self._n = len(frame)
        self._i = 0

    def start(self) -> None:
        super().start()
        self._i = 0

    def _load(self) -> bool:
        i = self._i
        if i >= self._n:
            return False
        lines = self.lines
        o, h, lo, c, v = self._cols
        lines.datetime[0] = self.datenums[i]
        lines.open[0] = o[i]
        lines.high[0] = h[i]
        lines.low[0] = lo[i]
        lines.close[0] = c[i]
        lines.volume[0] = v[i]
        lines.openinterest[0] = 0.0
        lines.bar[0] = i
        self._i = i + 1
        return True


def frame_feed(frame: pd.DataFrame, name: str | None = None, **kwargs) -> FrameFeed:
    """A :class:`FrameFeed` for ``frame`` with timeframe/compression taken from the data.

    The bar size comes from ``frame.attrs['timeframe']`` when set, else from
    ``mtl_bt.data.validate.infer_timeframe`` (the most common spacing of the index).
    """
    symbol = name or frame_symbol(frame, "data")
    seconds: float | None = None
    if frame.attrs.get("timeframe"):
        try:
            seconds = timeframe_seconds(str(frame.attrs["timeframe"]))
        except ValueError:
            seconds = None
    if seconds is None and len(frame) >= 2:
        from mtl_bt.data.validate import infer_timeframe

        seconds = timeframe_seconds(infer_timeframe(frame.index))
    if seconds is not None and "timeframe" not in kwargs:
        kwargs["timeframe"], kwargs["compression"] = bt_timeframe(seconds)
    return FrameFeed(dataname=frame, name=symbol, **kwargs)


def check_prices(frame: pd.DataFrame, symbol: str) -> None:
    """Prices must be finite and > 0 (a zero price breaks sizing and returns): DataError naming
    the symbol, column and first bad bar."""
    for col in ("open", "high", "low", "close"):
        values = frame[col].to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{symbol}: {col} is {values[i]} at {frame.index[i]} (row {i}); prices must be "
                "finite and > 0. Fix or drop that bar"
            )
