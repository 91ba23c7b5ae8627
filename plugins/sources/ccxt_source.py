"""The ``ccxt`` source: OHLCV from any ccxt exchange (Bybit spot by default).

Pages explicitly on ``since`` (``limit`` bars a call, 1000 by default) until
``until`` or now, passing an explicit window end to every call (Bybit returns
the *newest* bars of a window, so an open-ended request would skip history).
Page overlaps are de-duplicated, the still-forming last candle is dropped,
ccxt's rate limiter stays on, and transient errors (``NetworkError``,
``RateLimitExceeded``, ``ExchangeNotAvailable``, timeouts) are retried with
exponential backoff a bounded number of times, then reported clearly.

A page is trusted only when it is whole (docs/reliability.md): a body that is not
JSON (an HTML error page with HTTP 200, a cut-off answer) is retried like a 5xx;
an empty page with bars on both sides of its window is asked again and, if still
empty, fails the fetch; two different bars with one time on a page are an error.
The frame's ``attrs["verified"]`` is the ``[start, end)`` range the answers covered
(trailing empty pages are not verified), which is all the cache records as complete.
Credentials are never needed for candles; if set, they come only from the
environment (``MTL_BT_<EXCHANGE>_API_KEY``/``_SECRET``/``_PASSWORD``) and are
never logged or cached.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import ccxt
import pandas as pd

from mtl_bt.data.source import Source, check_options, clip
from mtl_bt.data.timeframe import normalise_timeframe, parse_time, utc_now
from mtl_bt.data.validate import DataWarning, normalise
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
    "rate_limit_ms": "ccxt's rateLimit: ms between requests per unit of an endpoint's cost "
    "(default: the exchange's own; 0 only for a local test server)",
}
MARKETS = ("spot", "linear", "inverse")
_MAX_MESSAGE = 300


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _is_json(body: Any) -> bool:
    """Whether an HTTP body parsed as JSON (an empty ccxt page may hide an HTML error page)."""
    if not isinstance(body, str | bytes):
        return body is not None
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _stamp(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


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
        api_url = options.get("api_url")
        if api_url is not None:
            parts = urlsplit(str(api_url))
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(
                    f"source 'ccxt': option api_url = {api_url!r} is not an http(s) URL; give "
                    "the base URL the exchange's API paths are appended to, with its scheme, "
                    "e.g. 'https://api-testnet.bybit.com' or 'http://127.0.0.1:8080' (or leave "
                    "it out for the exchange's own)"
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
        # ccxt's request spacing: the exchange's own unless set (its limiter is always on)
        given = rate = options.get("rate_limit_ms")
        if rate is not None:
            try:
                rate = float(rate)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"source 'ccxt': option rate_limit_ms = {rate!r} is not a number"
                ) from None
            if not 0.0 <= rate <= 3_600_000.0:
                raise ConfigError(
                    f"source 'ccxt': option rate_limit_ms = {given!r} must be in [0, 3600000] "
                    "(milliseconds; leave it out for the exchange's own spacing)"
                )
        settings["rate_limit_ms"] = rate
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
        key = (
            s["exchange"],
            s["market"],
            s["api_url"],
            s["testnet"],
            s["timeout"],
            s["rate_limit_ms"],
        )
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
        if s["rate_limit_ms"] is not None:  # else ccxt's own spacing for this exchange
            config["rateLimit"] = s["rate_limit_ms"]
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
                    delay = min(s["backoff"] * 2**attempt, s["max_backoff"])
                    # said as it happens: a silent retry looks like a stuck progress bar
                    warnings.warn(
                        f"source 'ccxt' ({exchange.id}): {what} failed ({_short(exc)}); "
                        f"retry {attempt + 1} of {attempts - 1} in {delay:g} s",
                        DataWarning,
                        stacklevel=2,
                    )
                    self.sleep(delay)
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
            rows, verified = self._pages(s, exchange, market, tf, since, until, symbol)
            frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
            frame.index = pd.to_datetime(frame.pop("time").astype("int64"), unit="ms", utc=True)
            frame = normalise(frame, symbol=symbol, source="ccxt", timeframe=timeframe)
            frame = clip(frame, since, until)
            frame.attrs["verified"] = (
                None
                if verified is None
                else tuple(pd.Timestamp(ms, unit="ms", tz="UTC") for ms in verified)
            )
            out[symbol] = frame
        return out

    def _pages(self, s, exchange, market: str, tf: str, since, until, symbol: str = ""):
        """All closed candles in ``[since, until)``, one explicit window per request, and the
        ``(start, end)`` ms range the answers verified (``None``: nothing verified)."""
        step = exchange.parse_timeframe(tf) * 1000
        now_ms = int(self.clock().value // 1_000_000)
        end_ms = now_ms if until is None else min(int(until.value // 1_000_000), now_ms)
        what = f"fetch_ohlcv {market} {tf}"
        bars: dict[int, list[float]] = {}
        answered: list[tuple[int, int, bool]] = []  # (lo, hi, had bars) per window asked
        if since is None and until is not None:  # an end but no start: the page ending there
            since = pd.Timestamp(end_ms - s["limit"] * step, unit="ms", tz="UTC")
        if since is None:  # neither: the latest page only
            page = self._page(s, exchange, what, market, tf, None, None)
            for row in page:
                bars[int(row[0])] = row
            self._report(len(page))
            verified = (min(bars), end_ms) if bars else None
        else:
            start_ms = -(-int(since.value // 1_000_000) // step) * step  # ceil to a bar
            cursor = start_ms
            while cursor < end_ms:
                window_end = min(cursor + s["limit"] * step, end_ms) - 1
                self._window(
                    s, exchange, what, market, tf, step, cursor, window_end, bars, answered
                )
                cursor = window_end + 1
            self._fill_holes(s, exchange, what, market, tf, step, bars, answered)
            verified = self._verified(start_ms, end_ms, bars, answered, symbol, tf)
        closed = [bars[t] for t in sorted(bars) if t + step <= now_ms and t < end_ms]
        return closed, verified

    def _page(self, s, exchange, what, market, tf, lo, hi) -> list[list[float]]:
        """One answer for ``[lo, hi]``; a body that is not JSON is retried like a 5xx."""
        attempts = s["retries"] + 1
        params = {} if hi is None else {"until": hi}
        for attempt in range(attempts):
            page = self._call(
                s, exchange, what, exchange.fetch_ohlcv, market, tf, lo, s["limit"], params
            )
            if page or _is_json(getattr(exchange, "last_http_response", None)):
                break
            if attempt + 1 < attempts:
                self.sleep(min(s["backoff"] * 2**attempt, s["max_backoff"]))
        else:
            body = str(exchange.last_http_response or "")[:60].replace("\n", " ")
            raise DataError(
                f"source 'ccxt' ({exchange.id}): {what} answered {attempts} times with a body "
                f"that is not JSON (starts {body!r}). The exchange or a proxy in between is "
                "failing: try again later, or check api_url"
            )
        seen: dict[int, list[float]] = {}
        for row in page:
            t = int(row[0])
            if t in seen and list(seen[t][1:6]) != list(row[1:6]):
                raise DataError(
                    f"source 'ccxt' ({exchange.id}): {what} returned two different bars at "
                    f"{_stamp(t)} on one page ({seen[t][1:6]} and {row[1:6]}); the exchange's "
                    "answer is inconsistent: try again later"
                )
            seen[t] = row
        return page

    def _window(self, s, exchange, what, market, tf, step, lo, hi, bars, answered) -> None:
        """Every bar in ``[lo, hi]`` (ms, inclusive) into ``bars``, whatever a full page kept.

        A page of ``limit`` rows may have been cut: exchanges that answer oldest-first
        drop the newest bars (continue after the newest one returned), Bybit answers
        with the newest bars of the window and drops the oldest (fetch what lies before
        the oldest one returned). A short page is the whole window (gaps are real).
        """
        while lo <= hi:
            page = self._page(s, exchange, what, market, tf, lo, hi)
            fresh = [row for row in page if lo <= int(row[0]) <= hi]
            answered.append((lo, hi, bool(fresh)))
            self._report(sum(int(row[0]) not in bars for row in fresh))
            for row in fresh:
                bars[int(row[0])] = row  # keyed by time: overlapping pages count once
            if len(page) < s["limit"] or not fresh:
                return
            stamps = [int(row[0]) for row in fresh]
            if min(stamps) > lo:  # the oldest bars were cut: fetch them (a smaller window)
                self._window(
                    s, exchange, what, market, tf, step, lo, min(stamps) - 1, bars, answered
                )
            lo = max(stamps) + step

    def _fill_holes(self, s, exchange, what, market, tf, step, bars, answered) -> None:
        """Ask again for every empty window with bars on both sides; fail if it stays empty."""
        if not bars:
            return
        first, last = min(bars), max(bars)
        holes = [(lo, hi) for lo, hi, full in answered if not full and first < lo and hi < last]
        for lo, hi in holes:
            for attempt in range(s["retries"]):
                self.sleep(min(s["backoff"] * 2**attempt, s["max_backoff"]))
                before = len(bars)
                self._window(s, exchange, what, market, tf, step, lo, hi, bars, [])
                if len(bars) > before:
                    break
            else:
                raise DataError(
                    f"source 'ccxt' ({exchange.id}): {what} returned no bars for "
                    f"{_stamp(lo)} .. {_stamp(hi)} although it has bars before and after "
                    f"(asked {s['retries'] + 1} times). A page went missing: try again later; "
                    "if the market really did not trade then, fetch each side separately "
                    "(since/until)"
                )

    @staticmethod
    def _verified(start_ms, end_ms, bars, answered, symbol, tf) -> tuple[int, int] | None:
        """The range the answers covered: trailing empty windows are not verified."""
        if not bars:
            return None
        full_his = [hi for lo, hi, full in answered if full]
        end = min(max(full_his) + 1, end_ms) if full_his else end_ms
        if end < end_ms:
            warnings.warn(
                f"source 'ccxt': no bars for {symbol or 'the symbol'} {tf} after "
                f"{_stamp(max(bars))} although the range runs to {_stamp(end_ms)}; that tail "
                "is not cached as complete, a later fetch asks again",
                DataWarning,
                stacklevel=4,
            )
        return start_ms, end

    def _report(self, n: int) -> None:
        if self.on_progress is not None and n:
            self.on_progress(n)
