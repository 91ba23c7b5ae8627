"""Live feeds with plain Backtrader strategies: real ccxt over HTTP to the loopback Bybit
server, whose exchange clock runs fast (a new hourly candle every fraction of a second)."""

from __future__ import annotations

import logging

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from data_testkit import BybitServer, ExchangeClock
from paper_testkit import HOUR, START, Lockstep, make_state

from mtl_bt.feeds import CCXTLiveFeed, LiveMarket, ccxt_market

COLS = ["open", "high", "low", "close", "volume"]


class Recorder(bt.Strategy):
    """Every bar each feed delivered, with its live flag, and every data notification."""

    def __init__(self):
        self.rows = []
        self.notes = []

    def notify_data(self, data, status, *args, **kwargs):
        self.notes.append((data._name, data._getstatusname(status)))

    def prenext(self):
        self.next()

    def next(self):
        for d in self.datas:
            self.rows.append(
                (
                    d._name,
                    pd.Timestamp(d.datetime.datetime(0), tz="UTC"),
                    *(getattr(d, c)[0] for c in COLS),
                    d.live[0],
                    len(d),
                )
            )


def _run(feeds, strategy=Recorder):
    cerebro = bt.Cerebro(stdstats=False)
    for feed in feeds:
        cerebro.adddata(feed)
    cerebro.addstrategy(strategy)
    return cerebro.run()[0]


def _frame(rows, symbol):
    out = pd.DataFrame(
        [r[1:] for r in rows if r[0] == symbol], columns=["time", *COLS, "live", "n"]
    )
    return out.drop_duplicates("n").set_index("time")


def test_closed_bars_only_in_order_with_warmup_backfill(exchange, sample_frames):
    clock = ExchangeClock(START, speed=0.0)
    url, state = exchange(clock)
    symbols = ["BTC/USDT", "ETH/USDT"]
    until = START.floor("1h") + 6 * HOUR
    market = ccxt_market(
        symbols,
        "1h",
        options={"api_url": url, "rate_limit_ms": 0},
        poll_seconds=0.02,
        warmup_bars=30,
        until=until,
    )
    with Lockstep(clock, lambda newest: newest in market.live_times, bars=6):
        strat = _run(market.feeds())
    for symbol, sid in zip(symbols, ["BTCUSDT", "ETHUSDT"], strict=True):
        got = _frame(strat.rows, symbol)
        first = START.floor("1h") - 30 * HOUR
        want = sample_frames[sid].loc[first : until - HOUR]
        # every closed bar once, in order, exactly the exchange's final values: the forming
        # candle (served with partial values) never reached the strategy
        assert got.index.equals(want.index)
        np.testing.assert_array_equal(got[COLS].to_numpy(), want[COLS].to_numpy())
        # history is back-fill; the newest bar at start and every later bar are live
        live = got.index[got["live"] == 1.0]
        assert list(live) == list(pd.date_range(START.floor("1h") - HOUR, periods=7, freq="1h"))
    # both feeds advance together: every next() saw the same time on both
    by_n = {}
    for name, t, *_rest, n in strat.rows:
        by_n.setdefault((n, t), set()).add(name)
    assert all(names == set(symbols) for names in by_n.values())
    statuses = [s for name, s in strat.notes if name == "BTC/USDT"]
    assert statuses[:2] == ["DELAYED", "LIVE"]


def test_single_feed_class_with_any_strategy(exchange, sample_frames):
    clock = ExchangeClock(START, speed=3600 / 0.25)  # free-running: a bar every 0.25 s
    clock.pause()
    url, _ = exchange(clock)
    feed = CCXTLiveFeed(
        exchange="bybit",
        symbol="SOL/USDT",
        timeframe="1h",
        options={"api_url": url, "rate_limit_ms": 0},
        poll_seconds=0.02,
        warmup_bars=5,
        until=START + 8 * HOUR,
    )
    assert feed.islive()
    clock.resume()
    strat = _run([feed])
    got = _frame(strat.rows, "SOL/USDT")
    want = sample_frames["SOLUSDT"].reindex(got.index)
    np.testing.assert_array_equal(got[COLS].to_numpy(), want[COLS].to_numpy())
    assert got.index.is_monotonic_increasing and got.index.is_unique
    assert got.index[-1] == START.floor("1h") + 7 * HOUR  # the last bar ending by `until`
    assert got["live"].iloc[-1] == 1.0


def test_bad_duplicate_and_late_candles_dropped_with_warning(exchange, caplog):
    clock = ExchangeClock(START, speed=0.0)
    bad_at = int((START.floor("1h") + 1 * HOUR).value // 1_000_000)
    dup_at = int((START.floor("1h") + 2 * HOUR).value // 1_000_000)

    def tamper(query, rows):
        out = []
        for row in rows:
            if int(row[0]) == bad_at and query["symbol"] == "ETHUSDT":
                row = [row[0], row[1], row[2], row[3], "nan", row[5], row[6]]
            out.append(row)
            if int(row[0]) == dup_at and query["symbol"] == "BTCUSDT":
                out.append([row[0], "1.0", "2.0", "0.5", "1.5", "9", "9"])  # same time, again
        return out

    url, state = exchange(clock, tamper=tamper)
    market = ccxt_market(
        ["BTC/USDT", "ETH/USDT"],
        "1h",
        options={"api_url": url, "rate_limit_ms": 0},
        poll_seconds=0.02,
        warmup_bars=3,
        until=START.floor("1h") + 4 * HOUR,
    )
    with caplog.at_level(logging.WARNING, logger="mtl_bt.feeds"):
        with Lockstep(clock, lambda newest: newest in market.live_times, bars=4):
            strat = _run(market.feeds())
    eth = _frame(strat.rows, "ETH/USDT")
    btc = _frame(strat.rows, "BTC/USDT")
    bad = pd.Timestamp(bad_at, unit="ms", tz="UTC")
    dup = pd.Timestamp(dup_at, unit="ms", tz="UTC")
    assert bad not in eth.index  # never delivered, so never traded
    assert np.isfinite(eth[COLS].to_numpy()).all()
    assert (btc.index == dup).sum() == 1 and btc.loc[dup, "close"] != 1.5
    reasons = {(s, t): r for s, t, r in market.dropped}
    assert "non-finite" in reasons[("ETH/USDT", bad)]
    # a second copy with other values is named as such: the first copy is the one used
    assert reasons[("BTC/USDT", dup)] == "arrived again with other values"
    text = caplog.text
    assert f"ETH/USDT: dropped the bar at {bad.isoformat()} (never traded): it has non-finite" in (
        text
    )
    assert f"BTC/USDT: the bar at {dup.isoformat()} arrived again with other values" in text
    assert "the first copy is kept" in text


def test_out_of_order_bar_is_dropped(caplog):
    """A source that sends an older bar after a newer one (yfinance can): dropped, logged."""
    from mtl_bt.feeds.live import BarSource

    t0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")

    class Source(BarSource):
        def __init__(self):
            self.calls = 0

        def now(self):
            return t0 + (3 + self.calls) * HOUR

        def history(self, symbols, since, until):
            return {}

        def recent(self, symbol, since):
            self.calls += 1
            ms = lambda t: int(t.value // 1_000_000)  # noqa: E731
            if self.calls == 1:
                return [[ms(t0 + HOUR), 1, 2, 0.5, 1.5, 1], [ms(t0 + 2 * HOUR), 1, 2, 0.5, 1, 1]]
            return [[ms(t0), 5, 6, 4, 5, 1]]  # older than what was delivered

    market = LiveMarket(Source(), ["X"], "1h", poll_seconds=0.0, warmup_bars=2)
    with caplog.at_level(logging.WARNING, logger="mtl_bt.feeds"):
        market._poll()
        market._poll()
    assert market.dropped == [("X", t0, "arrived out of order")]
    assert "X: dropped the bar at 2024-03-01T00:00:00+00:00" in caplog.text
    assert [b.time for b in market._queues["X"]] == [t0 + HOUR, t0 + 2 * HOUR]


def test_429_burst_and_outage_survived_gap_backfilled(exchange, sample_frames, caplog):
    """A 429/10006 burst (within the retries) and an outage of six bar intervals (every
    connection dropped; 1.2 s of wall time on a clock where a bar closes every 0.2 s)."""
    import threading

    clock = ExchangeClock(START, speed=3600 / 0.2)
    clock.pause()
    url, state = exchange(clock)
    until = START.floor("1h") + 24 * HOUR
    market = ccxt_market(
        ["BTC/USDT", "ETH/USDT"],
        "1h",
        options={
            "api_url": url,
            "rate_limit_ms": 0,
            "retries": 3,
            "backoff": 0.01,
            "max_backoff": 0.02,
        },
        poll_seconds=0.02,
        warmup_bars=5,
        until=until,
    )
    events = {}

    def disrupt():
        while len(market.live_times) < 2:
            if market._finished:
                return
            threading.Event().wait(0.01)
        with state.lock:
            state.script[:] = ["429", "429", "10006"]  # 3 failures, 4 attempts allowed
        while state.script:
            threading.Event().wait(0.01)
        events["burst_done"] = len(market.live_times)
        threading.Event().wait(0.1)
        now = clock.now()
        state.outage = (now, now + 6 * HOUR)
        events["outage"] = state.outage

    helper = threading.Thread(target=disrupt, daemon=True)
    with caplog.at_level(logging.INFO, logger="mtl_bt.feeds"):
        clock.resume()
        helper.start()
        strat = _run(market.feeds())
        helper.join(timeout=5)
    assert "outage" in events and state.dropped > 0
    for symbol, sid in (("BTC/USDT", "BTCUSDT"), ("ETH/USDT", "ETHUSDT")):
        got = _frame(strat.rows, symbol)
        want = sample_frames[sid].loc[got.index[0] : until - HOUR]
        # no bar missing, none twice, exact values: the gap was back-filled
        assert got.index.equals(want.index)
        np.testing.assert_array_equal(got[COLS].to_numpy(), want[COLS].to_numpy())
        first, last = events["outage"]
        during = got.loc[first.floor("1h") :]
        back_online = during.index[during["live"] == 1.0][0]  # first decision after it
        gap = during.loc[: back_online - HOUR]
        # bars that closed while the exchange was down: back-filled, never decided
        assert len(gap) >= 4 and (gap["live"] == 0.0).all()
        assert back_online >= last.floor("1h") - HOUR
    statuses = [s for name, s in market.statuses if name == "BTC/USDT"]
    i = statuses.index("DISCONNECTED")
    assert statuses[i + 1 : i + 3] == ["DELAYED", "LIVE"]
    assert ("BTC/USDT", "DELAYED") in strat.notes and ("BTC/USDT", "DISCONNECTED") in strat.notes
    text = caplog.text  # one line per transition, naming every symbol it applies to
    assert "BTC/USDT, ETH/USDT: DISCONNECTED (cannot reach ccxt)" in text
    assert "BTC/USDT, ETH/USDT: DELAYED" in text and "ccxt: reachable again after" in text
    assert "back-filled" in text and "(gap, " in text
    # the burst alone never disconnected the feed: the retries absorbed it
    assert statuses.count("DISCONNECTED") == 1


@pytest.mark.slow
def test_exchange_down_for_20_seconds_then_back(sample_frames, caplog):
    """The loopback server really down (its socket closed: connections refused) for 20 s of
    wall time while the exchange clock runs on (a bar closes every second): the feeds report
    DISCONNECTED, keep retrying with bounded backoff, and once the server is back the gap is
    back-filled before the next live bar; only the newest bar is ever live."""
    import threading
    import time

    clock = ExchangeClock(START, speed=3600.0)  # an hourly candle closes every wall second
    clock.pause()
    outage = {}
    with BybitServer(make_state(sample_frames, clock)) as server:
        until = START.floor("1h") + 28 * HOUR
        market = ccxt_market(
            ["BTC/USDT", "ETH/USDT"],
            "1h",
            options={
                "api_url": server.url,
                "rate_limit_ms": 0,
                "retries": 2,
                "backoff": 0.05,
                "max_backoff": 0.2,
            },
            poll_seconds=0.1,
            warmup_bars=5,
            until=until,
        )

        def disrupt():
            deadline = time.monotonic() + 60
            while len(market.live_times) < 2 and time.monotonic() < deadline:
                if market._finished:
                    return
                time.sleep(0.01)
            outage["first"] = clock.now()
            server.down()
            time.sleep(20.0)  # wall time, while the exchange clock keeps running
            outage["last"] = clock.now()
            server.up()

        helper = threading.Thread(target=disrupt, daemon=True)
        with caplog.at_level(logging.INFO, logger="mtl_bt.feeds"):
            clock.resume()
            helper.start()
            strat = _run(market.feeds())
            helper.join(timeout=30)
    assert market.error is None and "last" in outage, outage
    first, last = outage["first"], outage["last"]
    assert last - first >= 19 * HOUR  # the clock ran on through the outage
    # it kept trying while the server was down: each try is a bounded series of retries
    # (identical errors are one line, then one line with their count)
    failed = [r.getMessage() for r in caplog.records if "failed after 3 attempts" in r.getMessage()]
    repeats = [m for m in failed if "the same error" in m]
    assert len(failed) - len(repeats) <= 3 and repeats, failed
    assert sum(int(m.split("the same error ")[1].split(" more")[0]) for m in repeats) >= 2
    for symbol, sid in (("BTC/USDT", "BTCUSDT"), ("ETH/USDT", "ETHUSDT")):
        got = _frame(strat.rows, symbol)
        want = sample_frames[sid].loc[got.index[0] : until - HOUR]
        # every bar once, in order, the exchange's values: the gap was back-filled
        assert got.index.equals(want.index)
        np.testing.assert_array_equal(got[COLS].to_numpy(), want[COLS].to_numpy())
        after = got.loc[first.floor("1h") :]
        back = after.index[after["live"] == 1.0][0]  # the first decision after the outage
        gap = after.loc[: back - HOUR]
        # the ~20 bars that closed while the server was down: back-filled, never decided on
        assert len(gap) >= 15 and (gap["live"] == 0.0).all()
        assert back >= last.floor("1h") - HOUR  # decided on the newest bar, not an old one
    statuses = [s for name, s in market.statuses if name == "BTC/USDT"]
    i = statuses.index("DISCONNECTED")
    assert statuses[i + 1 : i + 3] == ["DELAYED", "LIVE"]
    assert ("BTC/USDT", "DISCONNECTED") in strat.notes and ("BTC/USDT", "DELAYED") in strat.notes
    assert "BTC/USDT, ETH/USDT: DISCONNECTED" in caplog.text and "DELAYED" in caplog.text


def test_rate_limited_is_named_as_such_and_the_recovery_is_said(exchange, caplog):
    """429 answers beyond the retries: the feeds report RATE-LIMITED (not 'cannot reach'),
    once, and 'reachable again' when the exchange answers; then the bars flow."""
    clock = ExchangeClock(START, speed=0.0)
    url, state = exchange(clock)
    state.script[:] = ["429", "429"]  # the first two candle requests; retries=0
    market = ccxt_market(
        ["BTC/USDT"],
        "1h",
        options={"api_url": url, "rate_limit_ms": 0, "retries": 0, "backoff": 0.01},
        poll_seconds=0.02,
        warmup_bars=3,
        until=START.floor("1h") + HOUR,
    )
    with caplog.at_level(logging.INFO, logger="mtl_bt.feeds"):
        with Lockstep(clock, lambda newest: newest in market.live_times, bars=1):
            strat = _run(market.feeds())
    assert market.error is None and strat.rows
    text = caplog.text
    assert text.count("BTC/USDT: RATE-LIMITED (rate-limited by ccxt)") == 1, text
    assert "cannot reach" not in text and "ccxt: reachable again after" in text
    assert ("BTC/USDT", "DISCONNECTED") in strat.notes  # Backtrader's status for it
