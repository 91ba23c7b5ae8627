"""The bundled real sample: counts and ranges as documented, split-adjusted, fast, copies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt.config import DataConfig
from mtl_bt.data import load_frames
from mtl_bt.errors import DataError
from mtl_bt.plugins.sources.sample import CRYPTO, STOCKS, SampleSource

# (bars, first, last) from the data README / PROVENANCE.md
DOCUMENTED = {
    "AAPL": (3270, "2000-03-01", "2013-03-01"),
    "IBM": (3270, "2000-03-01", "2013-03-01"),
    "MSFT": (3270, "2000-03-01", "2013-03-01"),
    "GOOG": (2148, "2004-08-19", "2013-03-01"),
    "FB": (196, "2012-05-18", "2013-03-01"),
    **{s: (8762, "2023-12-31 00:00", "2024-12-30 01:00") for s in CRYPTO},
}
SPLITS = {"AAPL": ["2000-06-21", "2005-02-28"], "MSFT": ["2003-02-18"]}
#: real moves bigger than 45%, documented in the README (not data errors)
REAL_CRASHES = {("AAPL", pd.Timestamp("2000-09-29", tz="UTC"))}


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return SampleSource().fetch(list(STOCKS) + list(CRYPTO))


def test_counts_and_ranges_as_documented(sample):
    for symbol, (bars, first, last) in DOCUMENTED.items():
        frame = sample[symbol]
        assert len(frame) == bars, symbol
        assert frame.index[0] == pd.Timestamp(first, tz="UTC"), symbol
        assert frame.index[-1] == pd.Timestamp(last, tz="UTC"), symbol
        assert frame.attrs["timeframe"] == ("1d" if symbol in STOCKS else "1h")
        assert frame.index.is_unique and frame.index.is_monotonic_increasing
        assert (frame["volume"] > 0).all()
    crypto_index = sample["BTC/USDT"].index
    assert crypto_index.equals(pd.date_range("2023-12-31", periods=8762, freq="1h", tz="UTC"))


def test_stocks_are_split_adjusted(sample):
    for symbol, dates in SPLITS.items():
        close = sample[symbol]["close"]
        returns = close.pct_change()
        for day in dates:
            stamp = pd.Timestamp(day, tz="UTC")
            window = returns[stamp - pd.Timedelta("10D") : stamp + pd.Timedelta("10D")]
            assert window.abs().max() < 0.45, (symbol, day, window.abs().max())
            # the raw file does show the split: the adjustment did the work
            raw = _raw_close(symbol)
            assert raw.pct_change()[stamp] < -0.40
        # volume scaled by the inverse factor: dollar volume unchanged by the adjustment
        raw = _raw_frame(symbol)
        np.testing.assert_allclose(
            (sample[symbol]["close"] * sample[symbol]["volume"]).to_numpy(),
            (raw["Close"] * raw["Volume"]).to_numpy(),
            rtol=1e-9,
        )


def test_no_unexplained_jumps_above_45_percent(sample):
    for symbol in STOCKS:
        returns = sample[symbol]["close"].pct_change().dropna()
        big = {(symbol, t) for t in returns.index[returns.abs() > 0.45]}
        assert big <= REAL_CRASHES, big - REAL_CRASHES
    aapl = sample["AAPL"]["close"].pct_change()
    assert aapl[pd.Timestamp("2000-09-29", tz="UTC")] < -0.45  # the real crash is kept


def _raw_frame(symbol: str) -> pd.DataFrame:
    from importlib import resources

    with resources.files("mtl_bt.data.sample").joinpath("stocks_daily_wiki.csv.gz").open("rb") as f:
        raw = pd.read_csv(f, compression="gzip")
    rows = raw[raw["Ticker"] == symbol].copy()
    rows.index = pd.to_datetime(rows["Date"]).dt.tz_localize("UTC")
    return rows


def _raw_close(symbol: str) -> pd.Series:
    return _raw_frame(symbol)["Close"]


def test_since_until_filter_and_copies(sample):
    source = SampleSource()
    part = source.fetch(["AAPL"], since="2005-01-03", until="2005-01-10")["AAPL"]
    assert list(part.index.strftime("%Y-%m-%d")) == [
        "2005-01-03",
        "2005-01-04",
        "2005-01-05",
        "2005-01-06",
        "2005-01-07",
    ]
    part.iloc[0, 0] = -1.0  # callers may mutate what they get ...
    again = source.fetch(["AAPL"], since="2005-01-03", until="2005-01-10")["AAPL"]
    assert again.iloc[0, 0] > 0  # ... without touching the in-process cache


def test_timeframe_mismatch_and_unknown_symbol_are_clear():
    with pytest.raises(DataError, match=r"'AAPL' has 1d bars; timeframe '1h' is not available"):
        SampleSource().fetch(["AAPL"], timeframe="1h")
    with pytest.raises(DataError, match=r"no symbol 'BTC/USD'.*Did you mean 'BTC/USDT'"):
        SampleSource().fetch(["BTC/USD"])
    assert len(SampleSource().fetch(["BTC/USDT"], timeframe="60m")["BTC/USDT"]) == 8762


def test_load_frames_parses_once_per_process_and_returns_copies():
    from mtl_bt.plugins.sources.sample import _crypto

    load_frames(DataConfig())  # warm the in-process cache
    hits = _crypto.cache_info().hits
    frames = load_frames(DataConfig(symbols=["SOL/USDT", "BTC/USDT"]))
    assert _crypto.cache_info().hits == hits + 2  # no file parsed again
    assert list(frames) == ["SOL/USDT", "BTC/USDT"]
    frames["SOL/USDT"].iloc[0, 0] = -1.0  # callers may mutate their copy
    assert load_frames(DataConfig(symbols=["SOL/USDT"]))["SOL/USDT"].iloc[0, 0] > 0
    assert frames["SOL/USDT"].attrs == {"symbol": "SOL/USDT", "timeframe": "1h", "source": "sample"}
