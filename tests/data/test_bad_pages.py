"""A bad exchange page never becomes a silent or cached gap (issue #17, item 1).

Real ccxt over HTTP against the loopback Bybit v5 server; the server answers chosen
requests with HTTP 200 and an HTML body, cut-off JSON, an empty list, or a page holding
one time twice with different values.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from data_testkit import MARKETS, NOW, synthetic_bar

from mtl_bt import hookimpl, registry
from mtl_bt.config import DataConfig
from mtl_bt.data import DataWarning, load_frames
from mtl_bt.errors import DataError
from mtl_bt.plugins.sources.ccxt_source import CcxtSource

SINCE, UNTIL = pd.Timestamp("2024-02-01", tz="UTC"), pd.Timestamp("2024-02-07", tz="UTC")
LIMIT = 50  # 144 bars: three windows of 50, 50 and 44


def _source(sleeps: list[float] | None = None) -> CcxtSource:
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return CcxtSource(sleep=record, clock=lambda: NOW, markets=MARKETS)


def _expected(start=SINCE, end=UNTIL) -> pd.DataFrame:
    stamps = pd.date_range(start, end, freq="1h", tz="UTC", inclusive="left")
    rows = [synthetic_bar(int(t.value // 1_000_000)) for t in stamps]
    values = np.array([[float(x) for x in row[1:6]] for row in rows])
    return pd.DataFrame(values, index=stamps, columns=["open", "high", "low", "close", "volume"])


def _fetch(url, sleeps=None, **options):
    options = {"api_url": url, "limit": LIMIT, "backoff": 0.5, **options}
    frames = _source(sleeps).fetch(
        ["BTC/USDT"], timeframe="1h", since=SINCE, until=UNTIL, **options
    )
    return frames["BTC/USDT"]


@pytest.mark.parametrize("bad", ["html", "badjson", "empty"])
def test_one_bad_page_mid_range_is_retried_and_the_range_is_whole(bybit, bad):
    url, state = bybit
    state.script = ["ok", bad]
    sleeps: list[float] = []
    frame = _fetch(url, sleeps)
    expected = _expected()
    assert frame.index.equals(expected.index)  # no 50-bar hole
    np.testing.assert_array_equal(frame.to_numpy(), expected.to_numpy())
    assert sleeps == [0.5]  # retried once, with the backoff of a 5xx
    assert len(state.kline_requests()) == 4
    assert frame.attrs["verified"] == (SINCE, UNTIL)


@pytest.mark.parametrize("bad", ["html", "badjson"])
def test_a_page_that_is_never_json_fails_the_fetch(bybit, bad):
    """Also the "malformed JSON every time" case: an error about the answer, not "no bars"."""
    url, state = bybit
    state.script = ["ok"] + [bad] * 10
    with pytest.raises(DataError, match=r"answered 3 times with a body that is not JSON"):
        _fetch(url, retries=2)


def test_a_page_that_stays_empty_between_bars_fails_the_fetch(bybit):
    url, state = bybit
    state.script = ["ok", "empty", "ok", "empty", "empty"]
    with pytest.raises(DataError, match=r"returned no bars for 2024-02-03 02:00 UTC .* before and"):
        _fetch(url, retries=2)


def test_two_different_bars_with_one_time_on_a_page_are_an_error(bybit):
    url, state = bybit
    state.script = ["ok", "dupe"]
    with pytest.raises(DataError, match=r"two different bars at 2024-02-04 02:00 UTC on one page"):
        _fetch(url)


class _Plugin:
    @hookimpl
    def register_sources(self, register):
        register("ccxt_test", lambda: _source(), "ccxt with test clock and markets")


@pytest.fixture
def ccxt_test():
    registry.register_plugin(_Plugin(), "ccxt_bad_pages_plugin")
    yield
    registry.unregister_plugin("ccxt_bad_pages_plugin")


def _cfg(url) -> DataConfig:
    return DataConfig(
        source="ccxt_test",
        symbols=["BTC/USDT"],
        timeframe="1h",
        since=str(SINCE.date()),
        until=str(UNTIL.date()),
        options={"api_url": url, "limit": LIMIT, "backoff": 0.0, "retries": 1},
    )


def test_a_failed_fetch_caches_nothing_and_a_healthy_one_gets_every_bar(bybit, ccxt_test, tmp_path):
    url, state = bybit
    state.script = ["ok", "html", "html"]
    with pytest.raises(DataError, match="not JSON"):
        load_frames(_cfg(url), cache_dir=tmp_path / "c")
    frame = load_frames(_cfg(url), cache_dir=tmp_path / "c")["BTC/USDT"]
    assert frame.index.equals(_expected().index)


def test_a_trailing_empty_page_is_not_cached_as_verified_and_is_topped_up(
    bybit, ccxt_test, tmp_path
):
    url, state = bybit
    state.script = ["ok", "ok", "empty"]  # the last window answers an empty list
    with pytest.warns(DataWarning, match=r"no bars for BTC/USDT 1h after .* not cached"):
        short = load_frames(_cfg(url), cache_dir=tmp_path / "c")["BTC/USDT"]
    assert len(short) == 100
    before = len(state.kline_requests())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        whole = load_frames(_cfg(url), cache_dir=tmp_path / "c")["BTC/USDT"]
    asked = state.kline_requests()[before:]
    assert len(asked) == 1  # only the unverified tail is asked again
    assert int(asked[0]["start"]) == (SINCE + pd.Timedelta(hours=100)).value // 1_000_000
    expected = _expected()
    assert whole.index.equals(expected.index)
    np.testing.assert_array_equal(whole.to_numpy(), expected.to_numpy())
    again = load_frames(_cfg(url), cache_dir=tmp_path / "c")["BTC/USDT"]
    assert len(state.kline_requests()) == before + 1  # now the cache holds the whole range
    pd.testing.assert_frame_equal(again, whole)
