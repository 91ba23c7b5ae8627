"""MTLStrategy on any Backtrader feed: the bars come from the feed's own lines.

Real Backtrader runs on bundled real bars (AAPL daily, BTC/USDT hourly 24/7) with one real
trained model: every way a user builds the feeds gives identical orders and final value.
"""

from __future__ import annotations

import datetime

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mtl_bt.backtesting import frame_feed
from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
from mtl_bt.backtesting.runner import make_cerebro
from mtl_bt.config import BacktestConfig
from mtl_bt.strategies import MTLStrategy


def run_feeds(feeds: dict, predictors, cerebro_kwargs=None, **params):
    """Run MTLStrategy over ``{name: feed}`` with the CLI's broker; (strategy, orders, value)."""
    cerebro = make_cerebro({}, BacktestConfig())
    if cerebro_kwargs:
        cerebro.p.__dict__.update(cerebro_kwargs)
    for name, feed in feeds.items():
        cerebro.adddata(feed, name=name)
    cerebro.addstrategy(MTLStrategy, predictor=predictors, record=True, **params)
    cerebro.addanalyzer(PortfolioAnalyzer, _name="p")
    strat = cerebro.run()[0]
    orders = pd.DataFrame(strat.analyzers.p.get_analysis()["orders"])
    return strat, orders, cerebro.broker.getvalue()


def pandas_index_feed(frame: pd.DataFrame) -> bt.feeds.PandasData:
    return bt.feeds.PandasData(dataname=frame)


def pandas_column_feed(frame: pd.DataFrame) -> bt.feeds.PandasData:
    """A ``Date`` column (naive UTC) instead of the index, and renamed OHLCV columns."""
    df = frame.tz_convert(None).reset_index()
    df = df.rename(
        columns={
            "datetime": "Date",
            "open": "O",
            "high": "H",
            "low": "L",
            "close": "Last",
            "volume": "Qty",
        }
    )
    df.insert(1, "close", df["Last"] * 3.0)  # a decoy: the mapping says Last, not close
    return bt.feeds.PandasData(
        dataname=df,
        datetime="Date",
        open="O",
        high="H",
        low="L",
        close="Last",
        volume="Qty",
        openinterest=None,
    )


def csv_feed(frame: pd.DataFrame, path) -> bt.feeds.GenericCSVData:
    """As a Backtrader user writes it: an intraday file states its bar size (else Backtrader
    reads it as daily and stamps every bar at the session end); daily bars are stamped at
    midnight like the frame's (``sessionend``)."""
    from mtl_bt.backtesting.calendar import bt_timeframe, timeframe_seconds

    tf, comp = bt_timeframe(timeframe_seconds(frame.attrs["timeframe"]))
    df = frame.tz_convert(None).reset_index()
    df["datetime"] = df["datetime"].dt.strftime("%Y-%m-%d %H:%M:%S")
    df[["datetime", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return bt.feeds.GenericCSVData(
        dataname=str(path),
        dtformat="%Y-%m-%d %H:%M:%S",
        datetime=0,
        open=1,
        high=2,
        low=3,
        close=4,
        volume=5,
        openinterest=-1,
        time=-1,
        timeframe=tf,
        compression=comp,
        sessionend=datetime.time(0, 0),
    )


@pytest.fixture(scope="module")
def reference(real_frames, real_model):
    feeds = {s: frame_feed(f, name=s) for s, f in real_frames.items()}
    return run_feeds(feeds, real_model)


def _same_run(a, b) -> None:
    strat_a, orders_a, value_a = a
    strat_b, orders_b, value_b = b
    assert len(orders_a) > 20
    pd.testing.assert_frame_equal(orders_a, orders_b)
    assert value_a == value_b
    assert len(strat_a.predictions_log) == len(strat_b.predictions_log)
    for (dt1, as1, p1), (dt2, as2, p2) in zip(
        strat_a.predictions_log, strat_b.predictions_log, strict=True
    ):
        assert dt1 == dt2 and as1 == as2
        for task in p1:
            np.testing.assert_array_equal(p1[task], p2[task])


def test_both_calendars_trade_in_the_reference_run(reference):
    strat, orders, value = reference
    assert set(orders["symbol"]) == {"AAPL", "BTC/USDT"}
    assert strat.ppy.tolist() == [252.0, 8760.0]  # each asset on its own calendar
    assert value != 100_000.0


@pytest.mark.parametrize("kind", ["pandas_index", "pandas_naive_index", "pandas_columns", "csv"])
def test_every_feed_kind_gives_identical_orders_and_value(
    kind, real_frames, real_model, reference, tmp_path
):
    if kind == "pandas_index":
        feeds = {s: pandas_index_feed(f) for s, f in real_frames.items()}
    elif kind == "pandas_naive_index":
        feeds = {s: pandas_index_feed(f.tz_convert(None)) for s, f in real_frames.items()}
    elif kind == "pandas_columns":
        feeds = {s: pandas_column_feed(f) for s, f in real_frames.items()}
    else:
        feeds = {
            s: csv_feed(f, tmp_path / f"{s.replace('/', '_')}.csv") for s, f in real_frames.items()
        }
    run = run_feeds(feeds, real_model)
    _same_run(reference, run)
    # the frame the model saw is the feed's bars, exactly
    for a, (s, f) in enumerate(real_frames.items()):
        got = run[0].frames[a]
        assert got.attrs["symbol"] == s
        pd.testing.assert_frame_equal(
            got, f[list(got.columns)], check_freq=False, check_index_type=False, check_names=False
        )


def test_a_mapped_close_drives_features_and_orders(real_frames, real_model):
    """close="close_x2": the features and the order sizes both use the doubled close, exactly
    as a frame whose close *is* doubled; no silent mix with the frame's own close column."""
    doubled = {s: f.assign(close=f["close"] * 2.0) for s, f in real_frames.items()}
    expected = run_feeds({s: frame_feed(f, name=s) for s, f in doubled.items()}, real_model)
    mapped = {
        s: bt.feeds.PandasData(dataname=f.assign(close_x2=f["close"] * 2.0), close="close_x2")
        for s, f in real_frames.items()
    }
    got = run_feeds(mapped, real_model)
    _same_run(expected, got)
    for a, s in enumerate(real_frames):
        x = real_model[0].features(doubled[s]).to_numpy(np.float32)
        np.testing.assert_array_equal(got[0].book.feats[a], x)
    plain = run_feeds({s: frame_feed(f, name=s) for s, f in real_frames.items()}, real_model)
    assert not plain[1].equals(got[1])  # the mapping really changed the orders
