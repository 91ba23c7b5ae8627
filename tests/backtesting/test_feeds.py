"""FrameFeed: exact values, UTC times, timeframe from data, mixed calendars, no stale trading."""

from __future__ import annotations

import datetime as dt

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mtl_bt.backtesting.feeds import bt_datenums, check_prices, frame_feed
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import DataError


class Recorder(bt.Strategy):
    def start(self):
        self.rows = []
        self.lens = [0] * len(self.datas)

    def prenext(self):
        self.next()

    def next(self):
        new = []
        for i, d in enumerate(self.datas):
            new.append(len(d) != self.lens[i])
            self.lens[i] = len(d)
        self.rows.append(
            (
                self.datetime.datetime(0),
                [
                    (d.datetime.datetime(0), d.open[0], d.close[0], d.volume[0]) if len(d) else None
                    for d in self.datas
                ],
                new,
                [d.bar[0] if len(d) and hasattr(d.lines, "bar") else None for d in self.datas],
            )
        )


def run(*feeds):
    cerebro = bt.Cerebro(stdstats=False)
    for f in feeds:
        cerebro.adddata(f)
    cerebro.addstrategy(Recorder)
    return cerebro.run()[0]


def test_values_and_utc_times_exact():
    frame = garch_bars(60, seed=3, freq="1h", start="2024-03-30 20:00", symbol="X")
    strat = run(frame_feed(frame))
    assert len(strat.rows) == len(frame)
    for i, (now, per, _, bars) in enumerate(strat.rows):
        ts = frame.index[i]
        assert now == ts.tz_convert("UTC").tz_localize(None).to_pydatetime()
        t, o, c, v = per[0]
        assert (o, c, v) == (frame["open"].iloc[i], frame["close"].iloc[i], frame["volume"].iloc[i])
        assert bars[0] == i


def test_non_utc_input_is_converted_to_utc():
    frame = garch_bars(5, seed=1, freq="1h", symbol="X")
    local = frame.tz_convert("America/New_York")
    strat = run(frame_feed(local))
    assert strat.rows[0][0] == dt.datetime(2010, 1, 4, 0, 0)  # UTC wall time, not New York


def test_timeframe_and_compression_from_data():
    hourly = frame_feed(garch_bars(10, freq="1h"))
    daily = frame_feed(garch_bars(10, freq="1D"))
    frame = garch_bars(10, freq="15min")
    frame.attrs.pop("timeframe")  # inferred from the index instead
    quarter = frame_feed(frame)
    assert (hourly.p.timeframe, hourly.p.compression) == (bt.TimeFrame.Minutes, 60)
    assert (daily.p.timeframe, daily.p.compression) == (bt.TimeFrame.Days, 1)
    assert (quarter.p.timeframe, quarter.p.compression) == (bt.TimeFrame.Minutes, 15)


def test_datenums_equal_backtraders_own():
    frame = garch_bars(50, freq="1h", symbol="X")
    ours = bt_datenums(frame.index)
    theirs = [bt.date2num(ts.to_pydatetime().replace(tzinfo=None)) for ts in frame.index]
    assert ours.tolist() == theirs


def test_mixed_calendars_mark_only_assets_with_a_new_bar():
    crypto = garch_bars(30, seed=1, freq="1D", symbol="C")  # 24/7
    stock = garch_bars(20, seed=2, freq="B", symbol="S")  # weekdays only
    strat = run(frame_feed(crypto), frame_feed(stock))
    stock_days = set(stock.index.tz_localize(None).to_pydatetime())
    for now, per, new, _ in strat.rows:
        assert new[0] is True
        assert new[1] == (now in stock_days)
        if not new[1] and per[1] is not None:  # the stale stock bar is from an earlier day
            assert per[1][0] < now
    assert sum(r[2][1] for r in strat.rows) == 20


def test_pandasdata_and_framefeed_give_identical_bars():
    frame = garch_bars(40, seed=5, symbol="X")
    ours = run(frame_feed(frame)).rows
    theirs = run(bt.feeds.PandasData(dataname=frame.tz_localize(None))).rows
    assert [r[:3] for r in ours] == [r[:3] for r in theirs]


def test_bad_frames_raise_clear_errors():
    frame = garch_bars(10, symbol="ZZZ")
    with pytest.raises(DataError, match="naive"):
        run(frame_feed(frame.tz_localize(None)))
    bad = frame.copy()
    bad.iloc[4, bad.columns.get_loc("close")] = 0.0
    with pytest.raises(DataError, match="ZZZ: close is 0.0"):
        check_prices(bad, "ZZZ")
    with pytest.raises(DataError, match="lacks column"):
        run(frame_feed(frame.drop(columns=["volume"])))
    assert np.isfinite(bt_datenums(pd.DatetimeIndex(frame.index))).all()
