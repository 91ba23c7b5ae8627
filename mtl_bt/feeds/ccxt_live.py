"""Live candles from a ccxt exchange (Bybit by default) for Backtrader.

The exchange's own clock (``fetch_time``, Bybit's ``/v5/market/time``) decides
which candles have closed. Warm-up history goes through the project's loader (the
on-disk cache first, then the ccxt source's paginated REST download); polling
calls ``fetch_ohlcv`` through the ccxt source's own retry code (bounded
exponential backoff on 429, 5xx, timeouts), so both paths behave exactly as
``mtl-bt data`` does. Nothing is ever sent to the exchange but candle and time
requests; API keys are not needed (if set, they come only from the environment).
"""

from __future__ import annotations

import threading
from typing import Any

import backtrader as bt
import pandas as pd

from mtl_bt.data.timeframe import parse_time
from mtl_bt.errors import DataError
from mtl_bt.feeds.live import BarSource, LiveFeed, LiveMarket, SourceDown


class CcxtBarSource(BarSource):
    """ccxt candles and clock, through :class:`~mtl_bt.plugins.sources.ccxt_source.CcxtSource`."""

    name = "ccxt"

    def __init__(
        self,
        timeframe: str,
        *,
        exchange: str = "bybit",
        options: dict[str, Any] | None = None,
        cache: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        from mtl_bt.plugins.sources.ccxt_source import CcxtSource

        self.timeframe = timeframe
        self.options = {"exchange": exchange, **(options or {})}
        self.cache = cache
        self.stop = stop or threading.Event()
        # retry waits end early when the market stops
        self._source = CcxtSource(sleep=self.stop.wait)
        self._settings = self._source._settings(self.options)
        self._exchange = None
        self._markets: dict[str, str] = {}

    def _ex(self):
        if self._exchange is None:
            try:
                self._exchange = self._source._exchange(self._settings)
            except DataError as exc:
                raise SourceDown(str(exc)) from exc
            if self.timeframe not in self._exchange.timeframes:
                raise DataError(
                    f"ccxt ({self._exchange.id}): timeframe {self.timeframe!r} not offered; "
                    f"available: {', '.join(self._exchange.timeframes)}"
                )
        return self._exchange

    def _call(self, what: str, fn, *args):
        try:
            return self._source._call(self._settings, self._exchange, what, fn, *args)
        except DataError as exc:
            raise SourceDown(str(exc), rate_limited=_rate_limited(exc)) from exc

    def _market(self, symbol: str) -> str:
        if symbol not in self._markets:
            ex = self._ex()
            self._markets[symbol] = self._source._market(ex, symbol, self._settings["market"])
        return self._markets[symbol]

    def now(self) -> pd.Timestamp:
        ex = self._ex()
        ms = self._call("fetch_time", ex.fetch_time)
        return pd.Timestamp(int(ms), unit="ms", tz="UTC")

    def history(self, symbols, since, until):
        from mtl_bt.config import DataConfig
        from mtl_bt.data import load_frames

        for symbol in symbols:
            self._market(symbol)  # a clear error for an unknown symbol before any download
        cfg = DataConfig(
            source="ccxt",
            symbols=list(symbols),
            timeframe=self.timeframe,
            since=since.isoformat(),
            until=until.isoformat(),
            cache=self.cache,
            options=self.options,
        )
        try:
            return load_frames(cfg, now=lambda: until)
        except DataError as exc:
            if "failed after" in str(exc):  # the retries ran out: the exchange is down
                raise SourceDown(str(exc), rate_limited=_rate_limited(exc)) from exc
            raise

    def recent(self, symbol, since):
        ex = self._ex()
        market = self._market(symbol)
        limit = self._settings["limit"]
        since_ms = int(since.value // 1_000_000)
        what = f"fetch_ohlcv {market} {self.timeframe}"
        page = self._call(what, ex.fetch_ohlcv, market, self.timeframe, since_ms, limit)
        if len(page) < limit:
            return page
        # a long gap (outage): every bar of it, page by page, as the ccxt source pages
        now_ms = int(self.now().value // 1_000_000)
        bars: dict[int, list[float]] = {}
        step = ex.parse_timeframe(self.timeframe) * 1000
        try:
            self._source._window(
                self._settings, ex, what, market, self.timeframe, step, since_ms, now_ms, bars
            )
        except DataError as exc:
            raise SourceDown(str(exc), rate_limited=_rate_limited(exc)) from exc
        return [bars[t] for t in sorted(bars)]


def ccxt_market(
    symbols: list[str],
    timeframe: str = "1h",
    *,
    exchange: str = "bybit",
    options: dict[str, Any] | None = None,
    cache: bool = True,
    **market_kwargs: Any,
) -> LiveMarket:
    """A :class:`LiveMarket` polling ``symbols`` on a ccxt exchange (see :class:`LiveMarket`)."""
    stop = threading.Event()
    source = CcxtBarSource(timeframe, exchange=exchange, options=options, cache=cache, stop=stop)
    market = LiveMarket(source, list(symbols), timeframe, wait=stop.wait, **market_kwargs)
    market._stop = stop  # one event stops the poll loop and the source's retry waits
    return market


class CCXTLiveFeed(LiveFeed):
    """Live ccxt candles for one symbol, as a Backtrader feed::

        data = CCXTLiveFeed(exchange="bybit", symbol="BTC/USDT", timeframe="1h")
        cerebro.adddata(data)

    For a portfolio, ``CCXTLiveFeed.portfolio(["BTC/USDT", "ETH/USDT"], "1h")`` returns
    feeds sharing one market, so each decision waits for every symbol's bar.
    """

    params = (
        ("exchange", "bybit"),
        ("options", None),
        ("poll_seconds", 10.0),
        ("warmup_bars", 500),
        ("cache", True),
        ("until", None),
    )

    def __init__(self) -> None:
        if self.p.market is None:
            timeframe = _timeframe_text(self.p.timeframe, self.p.compression)
            if not self.p.symbol:
                raise DataError("CCXTLiveFeed needs symbol=, e.g. symbol='BTC/USDT'")
            self.p.market = ccxt_market(
                [self.p.symbol],
                timeframe,
                exchange=self.p.exchange,
                options=self.p.options,
                cache=self.p.cache,
                poll_seconds=self.p.poll_seconds,
                warmup_bars=self.p.warmup_bars,
                until=parse_time(self.p.until, "until"),
            )
            self.p.market._feeds[self.p.symbol] = self
            self.p.name = self.p.name or self.p.symbol
        from mtl_bt.backtesting.calendar import bt_timeframe

        self.p.timeframe, self.p.compression = bt_timeframe(self.p.market.step.total_seconds())

    @classmethod
    def portfolio(cls, symbols: list[str], timeframe: str = "1h", **kwargs: Any) -> list[LiveFeed]:
        return ccxt_market(symbols, timeframe, **kwargs).feeds()


def _rate_limited(exc: BaseException) -> bool:
    """The retries ran out on "too many requests" answers (ccxt's RateLimitExceeded or
    DDoSProtection: HTTP 429, Bybit retCode 10006), not on an unreachable exchange."""
    import ccxt

    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
            return True
        cause = cause.__cause__
    return False


def _timeframe_text(timeframe: Any, compression: int) -> str:
    """ "1h" stays "1h"; Backtrader's (TimeFrame.Minutes, 60) becomes "60m"."""
    if isinstance(timeframe, str):
        return timeframe
    units = {bt.TimeFrame.Minutes: "m", bt.TimeFrame.Days: "d", bt.TimeFrame.Weeks: "w"}
    if timeframe not in units:
        raise DataError("CCXTLiveFeed timeframe: give a bar size like '1h' or '15m'")
    return f"{int(compression)}{units[timeframe]}"
