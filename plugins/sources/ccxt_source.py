"""The ``ccxt`` source: OHLCV from any ccxt exchange (Bybit spot by default).

Pages explicitly on ``since`` (``limit`` bars a call, 1000 by default) until
``until`` or now, passing an explicit window end to every call (Bybit returns
the *newest* bars of a window, so an open-ended request would skip history).
Page overlaps are de-duplicated, the still-forming last candle is dropped,
ccxt's rate limiter stays on, and transient errors (``NetworkError``,
``RateLimitExceeded``, ``ExchangeNotAvailable``, timeouts) are retried with
exponential backoff a bounded number of times, then reported clearly.
Credentials are never needed for candles; if set, they come only from the
environment (``MTL_BT_<EXCHANGE>_API_KEY``/``_SECRET``/``_PASSWORD``) and are
never logged or cached.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import ccxt
import pandas as pd

from mtl_bt.data.source import Source, check_options, clip
from mtl_bt.data.timeframe import normalise_timeframe, parse_time, utc_now
from mtl_bt.data.validate import normalise
from mtl_bt.errors import ConfigError, DataError

OPTIONS = {
    "exchange": "ccxt exchange id (default bybit)",
    "market": "spot (default), linear or inverse (perpetual swaps)",
    "api_url": "base URL replacing every exchange API URL (testnet, proxy, test server)",
    "testnet": "true: the exchange's sandbox (ccxt set_sandbox_mode)",
    "limit": "bars per request (default 1000, the Bybit maximum)",
    "retries": "retries of a failed request before giving up (default 5)",
    "backoff": "first retry delay in seconds, doubled each retry (default 1.0)",
    "max_backoff": "longest retry delay in seconds (default 30)",
    "timeout": "HTTP timeout in seconds (default 30)",
}
MARKETS = ("spot", "linear", "inverse")
_MAX_MESSAGE = 300


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _credentials(exchange_id: str) -> dict[str, str]:
    prefix = f"MTL_BT_{exchange_id.upper()}_"
    names = {"API_KEY": "apiKey", "SECRET": "secret", "PASSWORD": "password"}
    return {
        key: os.environ[prefix + env] for env, key in names.items() if os.environ.get(prefix + env)
    }


class CcxtSource(Source):
    """Candles over HTTP through ccxt; cached on disk by the loader.

    ``sleep`` and ``clock`` are injectable (tests: no real waiting, fixed now);
    ``markets`` (a list of ccxt market dicts) skips ``load_markets``.
    """

    name = "ccxt"
    cacheable = True
    default_timeframe = "1h"

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], pd.Timestamp] = utc_now,
        markets: list[dict[str, Any]] | None = None,
    ) -> None:
        self.sleep = sleep
        self.clock = clock
        self.markets = markets
        self._exchanges: dict[tuple, ccxt.Exchange] = {}

    # -- options -----------------------------------------------------------
    @staticmethod
    def _settings(options: dict[str, Any]) -> dict[str, Any]:
        check_options("ccxt", options, OPTIONS)
        market = str(options.get("market", "spot")).lower()
        if market not in MARKETS:
            raise ConfigError(
                f"source 'ccxt': market {market!r} must be one of {', '.join(MARKETS)}"
            )
        settings = {
            "exchange": str(options.get("exchange", "bybit")).lower(),
            "market": market,
            "api_url": options.get("api_url"),
            "testnet": bool(options.get("testnet", False)),
        }
        for name, default, low, high in (
            ("limit", 1000, 1, 1000),
            ("retries", 5, 0, 100),
            ("backoff", 1.0, 0.0, 3600.0),
            ("max_backoff", 30.0, 0.0, 3600.0),
            ("timeout", 30.0, 0.1, 3600.0),
        ):
            value = options.get(name, default)
            try:
                value = type(default)(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"source 'ccxt': option {name} = {value!r} is not a number"
                ) from None
            if not low <= value <= high:
                raise ConfigError(
                    f"source 'ccxt': option {name} = {value!r} must be in [{low}, {high}]"
                )
            settings[name] = value
        return settings

    def cache_namespace(self, options: dict[str, Any]) -> str:
        s = self._settings(options)
        name = f"{s['exchange']}-{s['market']}"
        if s["testnet"]:
            name += "-testnet"
        if s["api_url"]:  # a proxy/test server must never share a cache with the real exchange
            name += "-" + hashlib.sha1(str(s["api_url"]).encode()).hexdigest()[:10]
        return name

    # -- exchange ------------------------------------------------------------
    def _exchange(self, s: dict[str, Any]) -> ccxt.Exchange:
        key = (s["exchange"], s["market"], s["api_url"], s["testnet"], s["timeout"])
        if key in self._exchanges:
            return self._exchanges[key]
        if s["exchange"] not in ccxt.exchanges:
            close = difflib.get_close_matches(s["exchange"], ccxt.exchanges, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"source 'ccxt': unknown exchange {s['exchange']!r}.{hint}")
        config = {
            "enableRateLimit": True,
            "timeout": int(s["timeout"] * 1000),
            "options": {"defaultType": "spot" if s["market"] == "spot" else "swap"},
            **_credentials(s["exchange"]),
        }
        exchange = getattr(ccxt, s["exchange"])(config)
        if s["testnet"]:
            exchange.set_sandbox_mode(True)
        if s["api_url"]:
            base = str(s["api_url"]).rstrip("/")
            api = exchange.urls.get("api")
            if isinstance(api, dict):
                exchange.urls["api"] = {k: base for k in api}
            else:
                exchange.urls["api"] = base
        if not exchange.has.get("fetchOHLCV"):
            raise DataError(
                f"source 'ccxt': exchange {s['exchange']!r} does not offer OHLCV candles"
            )
        if self.markets is not None:
            exchange.set_markets(self.markets)
        else:
            self._call(s, exchange, "load_markets", exchange.load_markets)
        self._exchanges[key] = exchange
        return exchange

    def _call(self, s: dict[str, Any], exchange: ccxt.Exchange, what: str, fn, *args, **kwargs):
        """Run ``fn`` retrying transient errors with exponential backoff."""
        attempts = s["retries"] + 1
        last: BaseException | None = None
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except ccxt.NetworkError as exc:  # includes RateLimitExceeded, ExchangeNotAvailable
                last = exc
                if attempt + 1 < attempts:
                    self.sleep(min(s["backoff"] * 2**attempt, s["max_backoff"]))
            except ccxt.BadSymbol:
                raise
            except ccxt.BaseError as exc:
                raise DataError(
                    f"source 'ccxt' ({exchange.id}): {what} failed: {_short(exc)}"
                ) from exc
        raise DataError(
            f"source 'ccxt' ({exchange.id}): {what} failed after {attempts} attempts; last error "
            f"{_short(last)}. The exchange is down, unreachable or rate limiting: try again later, "
            "or raise the retries/backoff options"
        ) from last

    def _market(self, exchange: ccxt.Exchange, symbol: str, market_type: str) -> str:
        """The exchange's unified symbol for ``symbol`` in ``market_type`` (clear error if none)."""
        candidates = [symbol]
        if market_type != "spot" and ":" not in symbol and "/" in symbol:
            base, quote = symbol.split("/", 1)
            candidates.insert(0, f"{symbol}:{quote if market_type == 'linear' else base}")
        for candidate in candidates:
            market = exchange.markets.get(candidate) if exchange.markets else None
            if market is not None and (
                market.get("spot") if market_type == "spot" else market.get(market_type)
            ):
                return candidate
        same_type = [
            m["symbol"]
            for m in (exchange.markets or {}).values()
            if (m.get("spot") if market_type == "spot" else m.get(market_type))
        ]
        close = difflib.get_close_matches(candidates[0], same_type, n=5, cutoff=0.5)
        hint = f" Similar symbols: {', '.join(close)}." if close else ""
        raise DataError(
            f"source 'ccxt' ({exchange.id}, {market_type}): unknown symbol {symbol!r}.{hint} "
            f"{len(same_type)} {market_type} markets are listed; symbols look like BTC/USDT"
            + (" (linear: BTC/USDT:USDT)" if market_type != "spot" else "")
        )

    # -- fetch -----------------------------------------------------------------
    def fetch(
        self,
        symbols: list[str],
        *,
        timeframe: str | None = None,
        since: Any = None,
        until: Any = None,
        **options: Any,
    ) -> dict[str, pd.DataFrame]:
        s = self._settings(options)
        since, until = parse_time(since, "since"), parse_time(until, "until")
        timeframe = normalise_timeframe(timeframe or self.default_timeframe)
        exchange = self._exchange(s)
        tf = timeframe if timeframe in exchange.timeframes else None
        if tf is None:
            raise DataError(
                f"source 'ccxt' ({exchange.id}): timeframe {timeframe!r} not offered; available: "
                f"{', '.join(exchange.timeframes)}"
            )
        out = {}
        for symbol in symbols:
            market = self._market(exchange, symbol, s["market"])
            rows = self._pages(s, exchange, market, tf, since, until)
            frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
            frame.index = pd.to_datetime(frame.pop("time").astype("int64"), unit="ms", utc=True)
            frame = normalise(frame, symbol=symbol, source="ccxt", timeframe=timeframe)
            out[symbol] = clip(frame, since, until)
        return out

    def _pages(self, s, exchange, market: str, tf: str, since, until) -> list[list[float]]:
        """All closed candles in ``[since, until)``, one explicit window per request."""
        step = exchange.parse_timeframe(tf) * 1000
        now_ms = int(self.clock().value // 1_000_000)
        end_ms = now_ms if until is None else min(int(until.value // 1_000_000), now_ms)
        what = f"fetch_ohlcv {market} {tf}"
        bars: dict[int, list[float]] = {}
        if since is None and until is not None:  # an end but no start: the page ending there
            since = pd.Timestamp(end_ms - s["limit"] * step, unit="ms", tz="UTC")
        if since is None:  # neither: the latest page only
            page = self._call(s, exchange, what, exchange.fetch_ohlcv, market, tf, None, s["limit"])
            for row in page:
                bars[int(row[0])] = row
            self._report(len(page))
        else:
            cursor = -(-int(since.value // 1_000_000) // step) * step  # ceil to a bar
            while cursor < end_ms:
                window_end = min(cursor + s["limit"] * step, end_ms) - 1
                self._window(s, exchange, what, market, tf, step, cursor, window_end, bars)
                cursor = window_end + 1
        closed = [bars[t] for t in sorted(bars) if t + step <= now_ms and t < end_ms]
        return closed

    def _window(self, s, exchange, what, market, tf, step, lo, hi, bars) -> None:
        """Every bar in ``[lo, hi]`` (ms, inclusive) into ``bars``, whatever a full page kept.

        A page of ``limit`` rows may have been cut: exchanges that answer oldest-first
        drop the newest bars (continue after the newest one returned), Bybit answers
        with the newest bars of the window and drops the oldest (fetch what lies before
        the oldest one returned). A short page is the whole window (gaps are real).
        """
        while lo <= hi:
            page = self._call(
                s, exchange, what, exchange.fetch_ohlcv, market, tf, lo, s["limit"], {"until": hi}
            )
            fresh = [row for row in page if lo <= int(row[0]) <= hi]
            self._report(sum(int(row[0]) not in bars for row in fresh))
            for row in fresh:
                bars[int(row[0])] = row  # keyed by time: overlapping pages count once
            if len(page) < s["limit"] or not fresh:
                return
            stamps = [int(row[0]) for row in fresh]
            if min(stamps) > lo:  # the oldest bars were cut: fetch them (a smaller window)
                self._window(s, exchange, what, market, tf, step, lo, min(stamps) - 1, bars)
            lo = max(stamps) + step

    def _report(self, n: int) -> None:
        if self.on_progress is not None and n:
            self.on_progress(n)
