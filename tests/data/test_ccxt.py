"""ccxt source against a loopback Bybit v5 server (real ccxt, real HTTP, no internet)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data_testkit import HOUR_MS, MARKETS, NOW, synthetic_bar

from mtl_bt import hookimpl, registry
from mtl_bt.config import DataConfig
from mtl_bt.data import load_frames
from mtl_bt.errors import ConfigError, DataError
from mtl_bt.plugins.sources.ccxt_source import CcxtSource

FIXTURE = Path(__file__).with_name("bybit_v5_kline_fixture.json")  # ccxt static test data (MIT)


def _source(sleeps: list[float] | None = None) -> CcxtSource:
    record = sleeps.append if sleeps is not None else (lambda s: None)
    return CcxtSource(sleep=record, clock=lambda: NOW, markets=MARKETS)


def _expected(start: pd.Timestamp, end: pd.Timestamp, category: str = "spot") -> pd.DataFrame:
    stamps = pd.date_range(start, end, freq="1h", tz="UTC", inclusive="left")
    rows = [synthetic_bar(int(t.value // 1_000_000), category) for t in stamps]
    values = np.array([[float(x) for x in row[1:6]] for row in rows])
    return pd.DataFrame(values, index=stamps, columns=["open", "high", "low", "close", "volume"])


def test_multi_page_range_is_complete_sorted_unique(bybit):
    url, state = bybit
    since, until = pd.Timestamp("2023-12-01", tz="UTC"), pd.Timestamp("2024-02-15", tz="UTC")
    frame = _source().fetch(["BTC/USDT"], timeframe="1h", since=since, until=until, api_url=url)[
        "BTC/USDT"
    ]
    expected = _expected(since, until)
    assert len(frame) == len(expected) == 76 * 24
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    np.testing.assert_array_equal(frame.to_numpy(), expected.to_numpy())
    assert frame.index.equals(expected.index)
    assert len(state.kline_requests()) == 2


def test_more_than_2500_bars_over_three_pages(bybit):
    url, state = bybit
    since = pd.Timestamp("2023-11-01 05:00", tz="UTC")
    frame = _source().fetch(["BTC/USDT"], timeframe="1h", since=since, api_url=url)["BTC/USDT"]
    expected = _expected(since, pd.Timestamp("2024-03-01 10:00", tz="UTC"))  # 10:00 is forming
    assert len(frame) == len(expected) > 2500
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert frame.index.equals(expected.index)
    np.testing.assert_array_equal(frame.to_numpy(), expected.to_numpy())
    requests = state.kline_requests()
    assert len(requests) == 3
    # every request names an explicit window of at most 1000 bars, starting where the last ended
    for prev, cur in zip(requests, requests[1:], strict=False):
        assert int(cur["start"]) == int(prev["end"]) + 1
    assert all((int(r["end"]) - int(r["start"]) + 1) <= 1000 * HOUR_MS for r in requests)
    verified = frame.attrs.pop("verified")
    assert frame.attrs == {"symbol": "BTC/USDT", "timeframe": "1h", "source": "ccxt"}
    assert verified == (since, NOW)  # every window answered whole


def test_forming_last_candle_is_dropped(bybit):
    url, state = bybit
    frame = _source().fetch(["BTC/USDT"], timeframe="1h", api_url=url)["BTC/USDT"]
    # the server did send the 10:00 candle (NOW is 10:30): it is still forming
    last_request = state.kline_requests()[-1]
    assert "start" not in last_request
    assert frame.index[-1] == pd.Timestamp("2024-03-01 09:00", tz="UTC")
    assert len(frame) == 999


def test_overlapping_pages_are_deduplicated(bybit):
    """A capped exchange page (full page) continues right after its newest bar."""
    url, state = bybit
    since = pd.Timestamp("2024-02-01", tz="UTC")
    until = pd.Timestamp("2024-02-02", tz="UTC")
    frame = _source().fetch(
        ["BTC/USDT"], timeframe="1h", since=since, until=until, api_url=url, limit=5
    )["BTC/USDT"]
    assert len(state.kline_requests()) == 5
    assert frame.index.equals(_expected(since, until).index)


def test_pages_that_overlap_give_each_bar_once(bybit):
    """The server answers past each window's end, so consecutive pages share bars."""
    url, state = bybit
    state.overlap = 2
    since = pd.Timestamp("2024-02-01", tz="UTC")
    until = pd.Timestamp("2024-02-02", tz="UTC")
    frame = _source().fetch(
        ["BTC/USDT"], timeframe="1h", since=since, until=until, api_url=url, limit=5
    )["BTC/USDT"]
    requests = state.kline_requests()
    served = [(int(r["start"]), int(r["end"]) + 2 * HOUR_MS) for r in requests]
    assert any(nxt[0] <= prev[1] for prev, nxt in zip(served, served[1:], strict=False))
    assert frame.index.is_unique
    assert frame.index.equals(_expected(since, until).index)


def test_until_without_since_fetches_the_page_before_until(bybit):
    """An end far in the past still returns bars: the `limit` bars before `until`."""
    url, state = bybit
    until = pd.Timestamp("2024-01-10", tz="UTC")
    frame = _source().fetch(["BTC/USDT"], timeframe="1h", until=until, api_url=url, limit=50)[
        "BTC/USDT"
    ]
    assert len(frame) == 50
    assert frame.index[-1] == until - pd.Timedelta(hours=1)
    assert frame.index.equals(_expected(until - pd.Timedelta(hours=50), until).index)


@pytest.mark.parametrize("failure", ["429", "10006"])
def test_rate_limit_then_success_is_retried(bybit, failure):
    url, state = bybit
    state.script = [failure, failure]
    sleeps: list[float] = []
    since = pd.Timestamp("2024-02-28", tz="UTC")
    frame = _source(sleeps).fetch(
        ["BTC/USDT"], timeframe="1h", since=since, until="2024-02-29", api_url=url, backoff=0.5
    )["BTC/USDT"]
    assert len(frame) == 24
    assert sleeps == [0.5, 1.0]  # exponential backoff
    assert len(state.kline_requests()) == 3


def test_5xx_burst_longer_than_retry_budget_is_a_clear_error(bybit):
    url, state = bybit
    state.script = ["503"] * 10
    sleeps: list[float] = []
    with pytest.raises(DataError, match=r"failed after 4 attempts.*ExchangeNotAvailable") as err:
        _source(sleeps).fetch(
            ["BTC/USDT"], timeframe="1h", since="2024-02-28", api_url=url, retries=3, backoff=0.01
        )
    assert "try again later" in str(err.value)
    assert sleeps == [0.01, 0.02, 0.04]
    assert len(state.kline_requests()) == 4


def test_unknown_symbol_lists_similar_symbols(bybit):
    url, state = bybit
    with pytest.raises(DataError, match=r"unknown symbol 'BTC/USDX'.*Similar symbols: BTC/USDT"):
        _source().fetch(["BTC/USDX"], timeframe="1h", since="2024-02-28", api_url=url)
    assert state.kline_requests() == []


def test_linear_perpetual_on_request(bybit):
    url, state = bybit
    since, until = pd.Timestamp("2024-02-28", tz="UTC"), pd.Timestamp("2024-02-29", tz="UTC")
    frame = _source().fetch(
        ["BTC/USDT"], timeframe="1h", since=since, until=until, api_url=url, market="linear"
    )["BTC/USDT"]
    assert state.kline_requests()[-1]["category"] == "linear"
    np.testing.assert_array_equal(frame.to_numpy(), _expected(since, until, "linear").to_numpy())


def test_bad_options_and_timeframe_are_clear_errors(bybit):
    url, _ = bybit
    with pytest.raises(ConfigError, match="does not take option"):
        _source().fetch(["BTC/USDT"], timeframe="1h", api_url=url, apiurl=url)
    with pytest.raises(ConfigError, match="unknown exchange 'bybitt'.*bybit"):
        _source().fetch(["BTC/USDT"], timeframe="1h", exchange="bybitt")
    with pytest.raises(DataError, match="timeframe '7h' not offered"):
        _source().fetch(["BTC/USDT"], timeframe="7h", api_url=url)


def test_recorded_bybit_response_parses_to_recorded_result(bybit):
    """Serve the real recorded Bybit answer (strings, newest first, retCode "0") and check the
    source returns exactly ccxt's recorded parse, for the request ccxt recorded."""
    url, state = bybit
    fixture = json.loads(FIXTURE.read_text())
    state.replay = fixture["httpResponse"]
    symbol, timeframe, since_ms, limit = fixture["input"]
    expected = fixture["parsedResponse"]
    until_ms = expected[-1][0] + HOUR_MS
    clock = pd.Timestamp(until_ms + HOUR_MS, unit="ms", tz="UTC")
    source = CcxtSource(sleep=lambda s: None, clock=lambda: clock, markets=MARKETS)
    frame = source.fetch(
        [symbol],
        timeframe=timeframe,
        since=pd.Timestamp(since_ms, unit="ms", tz="UTC"),
        until=pd.Timestamp(until_ms, unit="ms", tz="UTC"),
        api_url=url,
        market="linear",
        limit=limit,
    )[symbol]
    request = state.kline_requests()[0]
    assert request["category"] == "linear" and request["symbol"] == "BTCUSDT"
    assert request["interval"] == "60" and request["limit"] == str(limit)
    got = [
        [int(t.value // 1_000_000), *row]
        for t, row in zip(frame.index, frame.to_numpy().tolist(), strict=True)
    ]
    assert got == [[float(x) if i else x for i, x in enumerate(row)] for row in expected]
    # and the synthetic rows have the recorded row shape
    row = synthetic_bar(expected[0][0], "linear")
    recorded = fixture["httpResponse"]["result"]["list"][0]
    assert len(row) == len(recorded) and all(isinstance(x, str) for x in row)


class _Plugin:
    """Registers a ccxt source wired to the fake clock and the minimal market list."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    @hookimpl
    def register_sources(self, register):
        register("ccxt_test", lambda: _source(self.sleeps), "ccxt with test clock and markets")


@pytest.fixture
def ccxt_test():
    plugin = _Plugin()
    registry.register_plugin(plugin, "ccxt_test_plugin")
    yield plugin
    registry.unregister_plugin("ccxt_test_plugin")


def test_load_frames_through_registry_and_cache_tops_up(bybit, ccxt_test, tmp_path):
    url, state = bybit
    cfg = DataConfig(
        source="ccxt_test",
        symbols=["BTC/USDT", "ETH/USDT"],
        timeframe="1h",
        since="2024-02-01",
        until="2024-02-10",
        options={"api_url": url},
    )
    first = load_frames(cfg, cache_dir=tmp_path / "c")
    assert list(first) == ["BTC/USDT", "ETH/USDT"]
    assert len(first["BTC/USDT"]) == 9 * 24
    n = len(state.kline_requests())
    assert n == 2
    again = load_frames(cfg, cache_dir=tmp_path / "c")  # cache hit: no request at all
    assert len(state.kline_requests()) == n
    pd.testing.assert_frame_equal(again["ETH/USDT"], first["ETH/USDT"])
    wider = cfg.model_copy(update={"since": "2024-01-30", "until": "2024-02-12"})
    third = load_frames(wider, cache_dir=tmp_path / "c")
    requests = state.kline_requests()[n:]
    assert len(requests) == 4  # per symbol: the missing head and the missing tail only
    heads = [r for r in requests if int(r["start"]) < pd.Timestamp("2024-02-01").value // 10**6]
    assert all(int(r["end"]) < pd.Timestamp("2024-02-01", tz="UTC").value // 10**6 for r in heads)
    expected = _expected(pd.Timestamp("2024-01-30", tz="UTC"), pd.Timestamp("2024-02-12", tz="UTC"))
    np.testing.assert_array_equal(third["BTC/USDT"].to_numpy(), expected.to_numpy())
    assert third["BTC/USDT"].index.equals(expected.index)
    # --no-cache: straight to the exchange
    load_frames(cfg, no_cache=True, cache_dir=tmp_path / "c")
    assert len(state.kline_requests()) == n + 4 + 2


def test_registered_source_loads_markets_over_http(bybit):
    """Without injected markets, the built-in ``ccxt`` plugin runs ccxt's real load_markets
    against the loopback instruments-info endpoint; unknown symbols list similar ones."""
    url, state = bybit
    source = registry.create("source", "ccxt")
    with pytest.raises(DataError, match=r"unknown symbol 'ETH/USDC'.*Similar symbols: ETH/USDT"):
        source.fetch(["ETH/USDC"], timeframe="1h", since="2024-02-01", api_url=url)
    frame = source.fetch(
        ["BTC/USDT"],
        timeframe="1h",
        since="2024-02-01",
        until="2024-02-02",
        api_url=url,
        market="linear",
    )["BTC/USDT"]
    assert len(frame) == 24 and state.kline_requests()[-1]["category"] == "linear"
    assert any(r["path"] == "/v5/market/instruments-info" for r in state.requests)


def test_progress_bar_counts_fetched_bars(bybit, ccxt_test, tmp_path, monkeypatch, capsys):
    url, _ = bybit
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    cfg = DataConfig(
        source="ccxt_test",
        symbols=["BTC/USDT"],
        timeframe="1h",
        since="2024-01-01",
        until="2024-02-01",
        options={"api_url": url},
    )
    frames = load_frames(cfg, no_cache=True, progress=True)
    assert len(frames["BTC/USDT"]) == 31 * 24
    err = capsys.readouterr().err
    assert "BTC/USDT" in err and "/744" in err  # a bar sized by the expected bar count
    source = _source()
    seen: list[int] = []
    source.on_progress = seen.append
    source.fetch(["BTC/USDT"], timeframe="1h", since="2024-01-01", until="2024-02-01", api_url=url)
    assert sum(seen) == 744 and len(seen) == 1


def test_rate_limit_ms_sets_ccxt_request_spacing_limiter_stays_on(bybit):
    """``rate_limit_ms`` is ccxt's ``rateLimit`` (and the ccxt source's exchange and the live
    feeds' are built with it); left out it is the exchange's own; the limiter is always on."""
    from mtl_bt.feeds.ccxt_live import CcxtBarSource

    url, _ = bybit
    source = _source()
    default = source._exchange(source._settings({"api_url": url}))
    assert default.enableRateLimit and default.rateLimit == ccxt_bybit_rate_limit() > 0
    fast = source._exchange(source._settings({"api_url": url, "rate_limit_ms": 0}))
    assert fast is not default and fast.enableRateLimit and fast.rateLimit == 0
    slow = source._exchange(source._settings({"api_url": url, "rate_limit_ms": "250"}))
    assert slow.rateLimit == 250
    frame = source.fetch(
        ["BTC/USDT"],
        timeframe="1h",
        since="2024-02-01",
        until="2024-02-02",
        api_url=url,
        rate_limit_ms=0,
    )["BTC/USDT"]
    assert len(frame) == 24
    # the option changes no data: one cache for any spacing
    assert source.cache_namespace({"api_url": url}) == source.cache_namespace(
        {"api_url": url, "rate_limit_ms": 0}
    )
    live = CcxtBarSource("1h", options={"api_url": url, "rate_limit_ms": 0})
    assert live._ex().rateLimit == 0 and live._ex().enableRateLimit


def ccxt_bybit_rate_limit() -> float:
    import ccxt

    return ccxt.bybit().rateLimit


@pytest.mark.parametrize("value", [-1, -0.5, "fast", float("nan")])
def test_bad_rate_limit_ms_is_a_one_line_error_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"option rate_limit_ms = .*") as info:
        CcxtSource._settings({"rate_limit_ms": value})
    assert "\n" not in str(info.value)


def test_every_ccxt_option_is_in_docs_data_md():
    from mtl_bt.plugins.sources.ccxt_source import OPTIONS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    for name in OPTIONS:
        assert f"| `{name}` |" in doc, name
