"""YFinanceLiveFeed with an injected download (yfinance 1.x's MultiIndex shape): the same
contract as the ccxt feed on a fast, lock-stepped clock."""

from __future__ import annotations

import threading

import backtrader as bt
import numpy as np
import pandas as pd
from test_live_feeds import COLS, Recorder, _frame
from test_yfinance import FakeYahoo, _history

from mtl_bt.feeds import YFinanceLiveFeed, yfinance_market

FIVE = pd.Timedelta("5min")
T0 = pd.Timestamp("2024-03-04 15:02", tz="UTC")  # mid-session: the 15:00 bar is forming


class LiveYahoo(FakeYahoo):
    """Yahoo as seen at ``clock()``: bars up to now, the current one partial (forming)."""

    def __init__(self, histories, clock):
        super().__init__(histories)
        self.clock = clock

    def __call__(self, **kwargs):
        now = self.clock()
        full = self.histories
        self.histories = {}
        for ticker, frame in full.items():
            frame = frame[frame.index <= now].copy()
            forming = frame.index[-1] + FIVE > now
            if forming:  # what Yahoo knows of the bar still forming
                o = frame.iloc[-1]["Open"]
                frame.iloc[-1, [1, 2, 3]] = [o, o, o]
            self.histories[ticker] = frame
        try:
            return super().__call__(**kwargs)
        finally:
            self.histories = full


def _histories():
    session = pd.date_range("2024-03-04 14:30", "2024-03-04 20:55", freq="5min", tz="UTC")
    aapl = _history("AAPL", session)
    msft = _history("MSFT", session.delete(40))  # MSFT has no 15:50 bar
    return {"AAPL": aapl, "MSFT": msft}


def _run(feeds):
    cerebro = bt.Cerebro(stdstats=False)
    for feed in feeds:
        cerebro.adddata(feed)
    cerebro.addstrategy(Recorder)
    return cerebro.run()[0]


def test_yfinance_live_contract():
    hist = _histories()
    now = {"t": T0}
    lock = threading.Lock()

    def clock():
        with lock:
            return now["t"]

    fake = LiveYahoo(hist, clock)
    until = T0.floor("5min") + 12 * FIVE
    market = yfinance_market(
        ["AAPL", "MSFT"],
        "5m",
        download=fake,
        clock=clock,
        poll_seconds=0.01,
        warmup_bars=6,
        timeout_seconds=0.0,
        until=until,
    )
    stop = threading.Event()

    def lockstep():  # the next bar closes once the newest was delivered live
        while not stop.wait(0.005):
            newest = clock().floor("5min") - FIVE
            if newest in market.live_times or (
                market.live_times and market.live_times[-1] > newest
            ):
                with lock:
                    now["t"] += FIVE
                if now["t"] > until + FIVE:
                    return

    helper = threading.Thread(target=lockstep, daemon=True)
    helper.start()
    strat = _run(market.feeds())
    stop.set()
    helper.join(timeout=5)
    first = T0.floor("5min") - 6 * FIVE
    for ticker in ("AAPL", "MSFT"):
        got = _frame(strat.rows, ticker)
        want = hist[ticker].loc[first : until - FIVE]
        assert got.index.equals(want.index)  # closed bars only, each once, in order
        np.testing.assert_array_equal(
            got[COLS].to_numpy(), want[["Open", "High", "Low", "Close", "Volume"]].to_numpy()
        )
        assert (got["live"].iloc[:5] == 0.0).all() and got["live"].iloc[-1] == 1.0
    missing = pd.Timestamp("2024-03-04 15:50", tz="UTC")
    assert missing in _frame(strat.rows, "AAPL").index  # AAPL's bar was not held back forever
    assert all(call["interval"] == "5m" for call in fake.calls)


def test_single_yfinance_feed_class():
    hist = _histories()
    clock = lambda: T0 + 3 * FIVE  # noqa: E731 - frozen: history only, then the run ends
    feed = YFinanceLiveFeed(
        symbol="AAPL",
        timeframe="5m",
        download=LiveYahoo(hist, clock),
        clock=clock,
        poll_seconds=0.01,
        warmup_bars=4,
    )
    feed.p.market.until = T0 + 3 * FIVE
    strat = _run([feed])
    got = _frame(strat.rows, "AAPL")
    assert got.index[-1] == T0.floor("5min") + 2 * FIVE  # 15:15 is still forming at 15:17
    np.testing.assert_array_equal(
        got[COLS].to_numpy(),
        hist["AAPL"].loc[got.index, ["Open", "High", "Low", "Close", "Volume"]].to_numpy(),
    )
