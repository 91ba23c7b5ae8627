"""Live Yahoo Finance bars (intraday intervals) for Backtrader, by polling ``yf.download``.

Yahoo has no exchange clock: ``clock`` (default: the machine's UTC time) decides
which bars have closed. The download call is injectable, as in the yfinance
source, so tests run offline; warm-up and polling both go through
:class:`~mtl_bt.plugins.sources.yfinance_source.YFinanceSource` (same column
handling, same UTC conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mtl_bt.data.timeframe import utc_now
from mtl_bt.errors import DataError
from mtl_bt.feeds.live import BarSource, LiveFeed, LiveMarket, SourceDown


class YFinanceBarSource(BarSource):
    name = "yfinance"

    def __init__(
        self,
        timeframe: str,
        *,
        download: Callable[..., pd.DataFrame] | None = None,
        clock: Callable[[], pd.Timestamp] = utc_now,
        options: dict[str, Any] | None = None,
    ) -> None:
        from mtl_bt.plugins.sources.yfinance_source import INTERVALS, YFinanceSource

        if timeframe not in INTERVALS or pd.Timedelta(
            timeframe.replace("m", "min")
        ) >= pd.Timedelta("1D"):
            raise DataError(
                f"YFinanceLiveFeed: timeframe {timeframe!r} is not an intraday Yahoo interval; "
                "use 1m, 2m, 5m, 15m, 30m, 1h or 90m"
            )
        self.timeframe = timeframe
        self.clock = clock
        self.options = dict(options or {})
        self._source = YFinanceSource(download=download)

    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.clock())

    def _fetch(self, symbols, since, until) -> dict[str, pd.DataFrame]:
        try:
            return self._source.fetch(
                list(symbols), timeframe=self.timeframe, since=since, until=until, **self.options
            )
        except DataError as exc:
            if "no bars for" in str(exc):  # nothing new yet (market closed): not an outage
                return {}
            raise SourceDown(str(exc)) from exc

    def history(self, symbols, since, until):
        return self._fetch(symbols, since, until)

    def recent(self, symbol, since):
        frame = self._fetch([symbol], since, None).get(symbol)
        if frame is None:
            return []
        ms = frame.index.as_unit("ms").asi8
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy(np.float64)
        return [[int(t), *v] for t, v in zip(ms, values.tolist(), strict=True)]


def yfinance_market(
    symbols: list[str],
    timeframe: str = "5m",
    *,
    download: Callable[..., pd.DataFrame] | None = None,
    clock: Callable[[], pd.Timestamp] = utc_now,
    options: dict[str, Any] | None = None,
    **market_kwargs: Any,
) -> LiveMarket:
    source = YFinanceBarSource(timeframe, download=download, clock=clock, options=options)
    return LiveMarket(source, list(symbols), timeframe, **market_kwargs)


class YFinanceLiveFeed(LiveFeed):
    """Live Yahoo bars for one ticker (``YFinanceLiveFeed(symbol="AAPL", timeframe="5m")``);
    ``YFinanceLiveFeed.portfolio([...], "5m", download=...)`` for several sharing one market."""

    params = (
        ("download", None),
        ("clock", None),
        ("options", None),
        ("poll_seconds", 30.0),
        ("warmup_bars", 500),
    )

    def __init__(self) -> None:
        if self.p.market is None:
            if not self.p.symbol or not isinstance(self.p.timeframe, str):
                raise DataError("YFinanceLiveFeed needs symbol= and timeframe= (e.g. '5m')")
            self.p.market = yfinance_market(
                [self.p.symbol],
                self.p.timeframe,
                download=self.p.download,
                clock=self.p.clock or utc_now,
                options=self.p.options,
                poll_seconds=self.p.poll_seconds,
                warmup_bars=self.p.warmup_bars,
            )
            self.p.market._feeds[self.p.symbol] = self
            self.p.name = self.p.name or self.p.symbol
        from mtl_bt.backtesting.calendar import bt_timeframe

        self.p.timeframe, self.p.compression = bt_timeframe(self.p.market.step.total_seconds())

    @classmethod
    def portfolio(cls, symbols: list[str], timeframe: str = "5m", **kwargs: Any) -> list[LiveFeed]:
        return yfinance_market(symbols, timeframe, **kwargs).feeds()
