"""yfinance source with ``download`` injected, answering exactly as yfinance 1.x shapes data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtl_bt import hookimpl, registry
from mtl_bt.config import DataConfig
from mtl_bt.data import load_frames
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import DataError
from mtl_bt.plugins.sources.yfinance_source import YFinanceSource

_COLUMNS = ["Open", "High", "Low", "Close", "Volume"]


def _history(ticker: str, index: pd.DatetimeIndex) -> pd.DataFrame:
    bars = garch_bars(len(index), seed=sum(map(ord, ticker)), price=50.0 + len(ticker))
    frame = pd.DataFrame(bars.to_numpy(), index=index, columns=_COLUMNS)
    frame.index.name = "Datetime" if index.tz is not None else "Date"
    return frame


def yf_shape(dfs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What yf.download(..., group_by='column', multi_level_index=True) returns for ``dfs``
    (this is yfinance 1.x's own combining code: union index, concat, swap to (Price, Ticker))."""
    index = None
    for df in dfs.values():
        if not df.empty:
            index = df.index if index is None else index.union(df.index)
    dfs = {k: v.reindex(index) for k, v in dfs.items()}
    data = pd.concat(dfs.values(), axis=1, sort=True, keys=dfs.keys(), names=["Ticker", "Price"])
    data.columns = data.columns.swaplevel(0, 1)
    data = data.sort_index(level=0, axis=1)
    return data


def _failed() -> pd.DataFrame:
    """yfinance's utils.empty_df(): what a failed ticker contributes."""
    empty = pd.DataFrame(
        index=[], data={c: np.nan for c in ["Open", "High", "Low", "Close", "Adj Close", "Volume"]}
    )
    empty.index.name = "Date"
    return empty


class FakeYahoo:
    """Serves per-ticker histories, filtered by start/end like Yahoo, in yfinance's shape."""

    def __init__(self, histories: dict[str, pd.DataFrame]) -> None:
        self.histories = histories
        self.calls: list[dict] = []

    def __call__(self, **kwargs) -> pd.DataFrame:
        self.calls.append(kwargs)
        out = {}
        for ticker in kwargs["tickers"]:
            frame = self.histories.get(ticker)
            if frame is None:
                out[ticker] = _failed()
                continue
            index = frame.index
            if "start" in kwargs:
                start, end = pd.Timestamp(kwargs["start"]), pd.Timestamp(kwargs["end"])
                if index.tz is not None:
                    start = start.tz_localize("UTC") if start.tz is None else start
                    end = end.tz_localize("UTC") if end.tz is None else end
                frame = frame[(index >= start) & (index < end)]
            out[ticker] = frame
        return yf_shape(out)


DAYS = pd.bdate_range("2024-01-02", "2024-03-28")  # tz-naive, like yfinance daily


def test_one_ticker_multiindex_daily():
    fake = FakeYahoo({"AAPL": _history("AAPL", DAYS)})
    data = fake(tickers=["AAPL"])
    assert isinstance(data.columns, pd.MultiIndex) and data.columns.names == ["Price", "Ticker"]
    frame = YFinanceSource(download=fake).fetch(["AAPL"])["AAPL"]
    call = fake.calls[-1]
    assert call["auto_adjust"] is True and call["interval"] == "1d" and call["period"] == "max"
    assert frame.index.equals(pd.DatetimeIndex(DAYS.tz_localize("UTC"), name="datetime"))
    expected = fake.histories["AAPL"]
    np.testing.assert_array_equal(
        frame.to_numpy(), expected[["Open", "High", "Low", "Close", "Volume"]].to_numpy()
    )
    assert frame.attrs == {"symbol": "AAPL", "timeframe": "1d", "source": "yfinance"}


def test_several_tickers_with_different_calendars_in_one_call():
    short = DAYS[10:40]
    fake = FakeYahoo({"AAPL": _history("AAPL", DAYS), "SHOP.TO": _history("SHOP.TO", short)})
    frames = YFinanceSource(download=fake).fetch(["AAPL", "SHOP.TO"])
    assert len(fake.calls) == 1 and fake.calls[0]["tickers"] == ["AAPL", "SHOP.TO"]
    assert len(frames["AAPL"]) == len(DAYS)
    # rows that exist only for AAPL are all-NaN for SHOP.TO and are not SHOP.TO bars
    assert len(frames["SHOP.TO"]) == len(short)
    np.testing.assert_array_equal(
        frames["SHOP.TO"]["close"].to_numpy(), fake.histories["SHOP.TO"]["Close"].to_numpy()
    )


def test_intraday_tz_aware_index_is_converted_to_utc():
    index = pd.date_range("2024-03-04 09:30", periods=7, freq="1h", tz="America/New_York")
    fake = FakeYahoo({"MSFT": _history("MSFT", index)})
    frame = YFinanceSource(download=fake).fetch(["MSFT"], timeframe="1h")["MSFT"]
    assert fake.calls[-1]["interval"] == "1h"
    assert frame.index[0] == pd.Timestamp("2024-03-04 14:30", tz="UTC")
    assert str(frame.index.tz) == "UTC"


def test_tz_aware_daily_index_keeps_the_local_date():
    index = pd.DatetimeIndex(DAYS[:5]).tz_localize("America/New_York")
    fake = FakeYahoo({"IBM": _history("IBM", index)})
    frame = YFinanceSource(download=fake).fetch(["IBM"])["IBM"]
    assert frame.index.equals(pd.DatetimeIndex(DAYS[:5].tz_localize("UTC"), name="datetime"))


def test_since_until_become_start_end_and_are_exclusive():
    fake = FakeYahoo({"AAPL": _history("AAPL", DAYS)})
    frame = YFinanceSource(download=fake).fetch(
        ["AAPL"],
        since=pd.Timestamp("2024-02-01", tz="UTC"),
        until=pd.Timestamp("2024-02-08", tz="UTC"),
    )["AAPL"]
    assert fake.calls[-1]["start"] == "2024-02-01" and fake.calls[-1]["end"] == "2024-02-08"
    assert list(frame.index.strftime("%m-%d")) == ["02-01", "02-02", "02-05", "02-06", "02-07"]


def test_unknown_ticker_and_bad_timeframe_are_clear_errors():
    fake = FakeYahoo({"AAPL": _history("AAPL", DAYS)})
    with pytest.raises(DataError, match="no bars for 'NOPE'.*unknown or delisted"):
        YFinanceSource(download=fake).fetch(["AAPL", "NOPE"])
    with pytest.raises(DataError, match="timeframe '4h' is not offered by Yahoo"):
        YFinanceSource(download=fake).fetch(["AAPL"], timeframe="4h")

    def offline(**kwargs):
        raise ConnectionError("no route to host")

    with pytest.raises(DataError, match="download of \\['AAPL'\\] failed: ConnectionError"):
        YFinanceSource(download=offline).fetch(["AAPL"])


def test_bad_bars_from_yahoo_are_validated():
    history = _history("AAPL", DAYS)
    history.iloc[5, 1] = history.iloc[5, 2] * 0.5  # High below Low
    fake = FakeYahoo({"AAPL": history})
    with pytest.raises(
        DataError, match=r"symbol 'AAPL': column 'high' is below max\(open, close\) at 2024-01-09"
    ):
        YFinanceSource(download=fake).fetch(["AAPL"])


def test_through_load_frames_cached_with_top_up(tmp_path):
    fake = FakeYahoo({"AAPL": _history("AAPL", DAYS), "MSFT": _history("MSFT", DAYS)})

    class Plugin:
        @hookimpl
        def register_sources(self, register):
            register("yf_test", lambda: YFinanceSource(download=fake), "yfinance, injected")

    registry.register_plugin(Plugin(), "yf_test_plugin")
    try:
        cfg = DataConfig(
            source="yf_test",
            symbols=["MSFT", "AAPL"],
            timeframe=None,
            since="2024-01-02",
            until="2024-02-01",
        )
        first = load_frames(cfg, cache_dir=tmp_path)
        assert list(first) == ["MSFT", "AAPL"] and len(first["AAPL"]) == 22
        assert len(fake.calls) == 1  # a cold cache: both tickers in one download
        assert list(fake.calls[0]["tickers"]) == ["MSFT", "AAPL"]
        load_frames(cfg, cache_dir=tmp_path)
        assert len(fake.calls) == 1
        later = load_frames(cfg.model_copy(update={"until": "2024-03-01"}), cache_dir=tmp_path)
        assert [c["start"] for c in fake.calls[1:]] == ["2024-02-01", "2024-02-01"]
        assert later["AAPL"].index[-1] == pd.Timestamp("2024-02-29", tz="UTC")
    finally:
        registry.unregister_plugin("yf_test_plugin")


#: what yfinance 1.7 logged here, in this sandbox with no network (measured)
_NO_NETWORK = [
    "Cookie/crumb fetch failed (DNSError), continuing without crumb",
    "\n1 Failed download:",
    "['AAPL']: DNSError('Failed to perform, curl: (6) Could not resolve host: "
    "query2.finance.yahoo.com. See https://curl.se/libcurl/c/libcurl-errors.html first for "
    "more details.')",
]


def _logging_download(messages):
    import logging

    def download(**kwargs):
        for message in messages:
            logging.getLogger("yfinance").error(message)
        return pd.DataFrame()  # what yf.download returns when every ticker failed

    return download


def test_no_network_is_reported_as_a_network_failure_not_a_ticker():
    with pytest.raises(DataError) as err:
        YFinanceSource(download=_logging_download(_NO_NETWORK)).fetch(["AAPL"])
    text = str(err.value)
    assert "Yahoo Finance could not be reached for ['AAPL']" in text
    assert "curl: (6) Could not resolve host: query2" in text
    assert "network failure, not an unknown ticker" in text and "delisted" not in text


def test_an_empty_answer_still_names_the_ticker():
    delisted = ["['NOPE']: YFTzMissingError('possibly delisted; no timezone found')"]
    with pytest.raises(DataError, match="no bars for 'NOPE'.*unknown or delisted ticker"):
        YFinanceSource(download=_logging_download(delisted)).fetch(["NOPE"])
