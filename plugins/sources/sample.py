"""The ``sample`` source: real bars bundled inside the package (see data/sample/PROVENANCE.md).

Daily AAPL, IBM, MSFT, GOOG, FB (2000-2013, split-adjusted here) and hourly
BTC, ETH, SOL, AVAX, DOT against USDT (2024). Parsed once per process
(``lru_cache``); every call gets copies, so callers may mutate freely.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd

from mtl_bt.data.source import Source, check_options, clip
from mtl_bt.data.timeframe import normalise_timeframe
from mtl_bt.data.validate import normalise
from mtl_bt.errors import DataError

STOCKS = ("AAPL", "IBM", "MSFT", "GOOG", "FB")
CRYPTO = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "AVAX/USDT", "DOT/USDT")
NATIVE = {**{s: "1d" for s in STOCKS}, **{s: "1h" for s in CRYPTO}}
_PACKAGE = "mtl_bt.data.sample"


def _open(name: str):
    return resources.files(_PACKAGE).joinpath(name).open("rb")


@lru_cache(maxsize=1)
def _stocks() -> dict[str, pd.DataFrame]:
    """All five stocks, split-adjusted with the Adj Close / Close factor."""
    with _open("stocks_daily_wiki.csv.gz") as handle:
        raw = pd.read_csv(handle, compression="gzip")
    out = {}
    for ticker, rows in raw.groupby("Ticker", sort=False):
        factor = rows["Adj Close"] / rows["Close"]
        bars = pd.DataFrame(
            {
                "open": rows["Open"] * factor,
                "high": rows["High"] * factor,
                "low": rows["Low"] * factor,
                "close": rows["Close"] * factor,
                "volume": rows["Volume"] / factor,
            }
        )
        bars.index = pd.to_datetime(rows["Date"]).dt.tz_localize("UTC")
        out[str(ticker)] = normalise(
            bars, symbol=str(ticker), source="sample", timeframe="1d", path="sample/stocks"
        )
    return out


@lru_cache(maxsize=len(CRYPTO))
def _crypto(symbol: str) -> pd.DataFrame:
    name = f"{symbol.replace('/', '_')}-1h.csv.gz"
    with _open(name) as handle:
        raw = pd.read_csv(handle, compression="gzip")
    raw.index = pd.to_datetime(raw.pop("date"), format="ISO8601", utc=True)
    return normalise(raw, symbol=symbol, source="sample", timeframe="1h", path=f"sample/{name}")


def sample_frame(symbol: str) -> pd.DataFrame:
    """A fresh copy of the whole bundled history of ``symbol``."""
    if symbol in STOCKS:
        frame = _stocks()[symbol]
    elif symbol in CRYPTO:
        frame = _crypto(symbol)
    else:
        close = difflib.get_close_matches(str(symbol), list(NATIVE), n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise DataError(
            f"source 'sample' has no symbol {symbol!r}.{hint} Available: "
            f"{', '.join(CRYPTO)} (1h) and {', '.join(STOCKS)} (1d)"
        )
    copy = frame.copy()
    copy.attrs = dict(frame.attrs)
    return copy


class SampleSource(Source):
    """Real bundled bars; local, so never cached on disk."""

    name = "sample"
    cacheable = False

    def fetch(
        self,
        symbols: list[str],
        *,
        timeframe: str | None = None,
        since: Any = None,
        until: Any = None,
        **options: Any,
    ) -> dict[str, pd.DataFrame]:
        check_options("sample", options, {})
        timeframe = normalise_timeframe(timeframe)
        out = {}
        for symbol in symbols:
            frame = sample_frame(symbol)
            native = NATIVE[symbol]
            if timeframe is not None and timeframe != native:
                raise DataError(
                    f"source 'sample': {symbol!r} has {native} bars; timeframe {timeframe!r} is not "
                    f'available (no resampling). Set data.timeframe = "{native}" (or leave it '
                    f"unset), or pick symbols with {timeframe} bars"
                )
            out[symbol] = clip(frame, since, until)
        return out
