"""The ``yfinance`` source: Yahoo Finance bars through ``yf.download`` (adjusted OHLC).

One ``download`` call for all symbols. yfinance 1.x returns MultiIndex columns
``(Price, Ticker)``; they are split per ticker here. Daily and longer bars come
back tz-naive, dated in the exchange's local calendar: each date becomes that
date 00:00 UTC (the same convention as the ``sample`` stocks). Intraday bars
come back in the exchange time zone and are converted to UTC (naive ones are
taken as UTC). The download function is injectable so tests run offline.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from mtl_bt.data.source import Source, check_options, clip
from mtl_bt.data.timeframe import normalise_timeframe, parse_time, parse_timeframe, utc_now
from mtl_bt.data.validate import normalise
from mtl_bt.errors import DataError

#: our timeframe -> yfinance interval
INTERVALS = {
    "1m": "1m",
    "2m": "2m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "90m": "90m",
    "1d": "1d",
    "5d": "5d",
    "1w": "1wk",
}
OPTIONS = {
    "prepost": "include pre/post-market bars (intraday only; default false)",
    "timeout": "seconds to wait for Yahoo (default 30)",
}
_PRICE_NAMES = {"open", "high", "low", "close", "volume", "adj close"}


#: what yfinance's logged errors say when the request never got an answer
_NETWORK = re.compile(
    r"curl: \(\d+\)|DNSError|Could not resolve|ConnectionError|Failed to connect|timed out|"
    r"Timeout|SSLError|ProxyError|Network is unreachable|Connection refused",
    re.IGNORECASE,
)


@contextlib.contextmanager
def _yahoo_errors():
    """The error messages the ``yfinance`` logger emits during the block (yfinance 1.x logs
    a failed download and returns an empty frame instead of raising)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                messages.append(record.getMessage())

    handler = _Collect()
    logger = logging.getLogger("yfinance")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _first_reason(messages: list[str]) -> str:
    text = messages[-1].strip()
    match = re.search(r"curl: \(\d+\)[^.]*", text)
    return (match.group(0) if match else text)[:200]


def _default_download(*args: Any, **kwargs: Any) -> pd.DataFrame:
    import yfinance as yf

    return yf.download(*args, **kwargs)


def split_tickers(data: pd.DataFrame, symbols: list[str]) -> dict[str, pd.DataFrame]:
    """Per-ticker frames from what ``yf.download`` returned (MultiIndex or flat columns)."""
    if data is None:
        return {}
    if not isinstance(data.columns, pd.MultiIndex):
        if len(symbols) != 1:
            raise DataError("yfinance returned flat columns for several tickers; cannot split them")
        return {symbols[0]: data}
    levels = [
        i
        for i in range(data.columns.nlevels)
        if {str(v).lower() for v in data.columns.get_level_values(i)} <= _PRICE_NAMES
    ]
    if not levels:
        raise DataError(f"yfinance returned unexpected columns {list(data.columns)[:6]}")
    price_level = levels[0]
    ticker_level = 1 - price_level if data.columns.nlevels == 2 else None
    if ticker_level is None:
        raise DataError(f"yfinance returned {data.columns.nlevels}-level columns; expected 2")
    out = {}
    tickers = {str(t).upper(): t for t in data.columns.get_level_values(ticker_level).unique()}
    for symbol in symbols:
        key = tickers.get(symbol.upper())
        if key is None:
            continue
        part = data.xs(key, axis=1, level=ticker_level)
        out[symbol] = part
    return out


class YFinanceSource(Source):
    """Yahoo Finance through yfinance; cached on disk by the loader."""

    name = "yfinance"
    cacheable = True
    default_timeframe = "1d"

    def __init__(self, download: Callable[..., pd.DataFrame] | None = None) -> None:
        self.download = download or _default_download

    def cache_namespace(self, options: dict[str, Any]) -> str:
        return "yahoo-prepost" if options.get("prepost") else "yahoo"

    def fetch(
        self,
        symbols: list[str],
        *,
        timeframe: str | None = None,
        since: Any = None,
        until: Any = None,
        **options: Any,
    ) -> dict[str, pd.DataFrame]:
        check_options("yfinance", options, OPTIONS)
        since, until = parse_time(since, "since"), parse_time(until, "until")
        timeframe = normalise_timeframe(timeframe or self.default_timeframe)
        if timeframe not in INTERVALS:
            raise DataError(
                f"source 'yfinance': timeframe {timeframe!r} is not offered by Yahoo; use one of "
                f"{', '.join(INTERVALS)}"
            )
        daily = parse_timeframe(timeframe) >= pd.Timedelta("1D")
        kwargs: dict[str, Any] = {
            "tickers": list(symbols),
            "interval": INTERVALS[timeframe],
            "auto_adjust": True,
            "actions": False,
            "progress": False,
            "group_by": "column",
            "multi_level_index": True,
            "prepost": bool(options.get("prepost", False)),
            "timeout": float(options.get("timeout", 30)),
            "threads": len(symbols) > 1,
        }
        if since is not None or until is not None:
            start = since if since is not None else pd.Timestamp("1970-01-02", tz="UTC")
            end = until if until is not None else utc_now() + pd.Timedelta("1D")
            kwargs["start"] = start.strftime("%Y-%m-%d") if daily else start.to_pydatetime()
            # yfinance's end is exclusive and date-granular for daily bars
            kwargs["end"] = (
                (end + pd.Timedelta("1D") if end.normalize() != end else end).strftime("%Y-%m-%d")
                if daily
                else end.to_pydatetime()
            )
        else:
            kwargs["period"] = "max"
        try:
            with _yahoo_errors() as errors:
                data = self.download(**kwargs)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"source 'yfinance': download of {symbols} failed: {type(exc).__name__}: {exc}"
            ) from exc
        network = [e for e in errors if _NETWORK.search(e)]
        if network:  # yfinance logs a failed connection and returns nothing: not the ticker's fault
            raise DataError(
                f"source 'yfinance': Yahoo Finance could not be reached for {list(symbols)} "
                f"({_first_reason(network)}). This is a network failure, not an unknown ticker: "
                "check the connection or proxy and try again"
            )
        parts = split_tickers(data, list(symbols))
        out = {}
        for symbol in symbols:
            part = parts.get(symbol)
            if part is not None:
                part = part.drop(columns=[c for c in part.columns if str(c).lower() == "adj close"])
                # rows that exist only for other tickers of the same call are all-NaN here
                part = part.dropna(how="all")
            if part is None or part.empty:
                raise DataError(
                    f"source 'yfinance': no bars for {symbol!r} ({timeframe}"
                    + (f", {since} .. {until}" if since is not None or until is not None else "")
                    + "): unknown or delisted ticker, or no trading in that range"
                )
            index = pd.DatetimeIndex(part.index)
            if daily:
                index = index.tz_localize(None) if index.tz is not None else index
                index = index.normalize().tz_localize("UTC")
            elif index.tz is None:
                index = index.tz_localize("UTC")
            part = part.copy()
            part.index = index
            frame = normalise(part, symbol=symbol, source="yfinance", timeframe=timeframe)
            out[symbol] = clip(frame, since, until)
        return out
