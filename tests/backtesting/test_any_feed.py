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

MEMORYLESS = {"hysteresis": False, "margin": 0.0}  # the pre-cost-aware rule: trades often


def run_feeds(feeds: dict, predictors, cerebro_kwargs=None, **params):
    """Run MTLStrategy over ``{name: feed}`` with the CLI's broker; (strategy, orders, value)."""
    cerebro = make_cerebro({}, BacktestConfig())
    if cerebro_kwargs:
        cerebro.p.__dict__.update(cerebro_kwargs)
    for name, feed in feeds.items():
        cerebro.adddata(feed, name=name)
    # the daily AAPL model also trades the hourly BTC/USDT feed here: these tests are about
    # feeds, not the model's fit (any_bar_size; without it that feed is refused)
    params.setdefault("any_bar_size", True)
    params.setdefault("signal_options", MEMORYLESS)  # plumbing tests: enough orders
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


# -- calendar and bad feeds -----------------------------------------------------------
def test_calendar_from_the_feed_timeframe_else_the_spacing(real_frames, real_model):
    """A feed that states its bar size (here a daily CSV claimed as weekly) is annualised by
    it; a feed on Backtrader's default (Days, 1) by its bars' spacing (hourly: 8760)."""
    btc = real_frames["BTC/USDT"]
    stated = bt.feeds.PandasData(dataname=btc, timeframe=bt.TimeFrame.Minutes, compression=120)
    strat, _, _ = run_feeds({"BTC/USDT": stated}, real_model)
    assert strat.ppy.tolist() == [365.0 * 12]
    strat, _, _ = run_feeds({"BTC/USDT": bt.feeds.PandasData(dataname=btc)}, real_model)
    assert strat.ppy.tolist() == [8760.0]


def _run_one(frame, predictors, name="X", **feed_kwargs):
    return run_feeds({name: bt.feeds.PandasData(dataname=frame, **feed_kwargs)}, predictors)


def test_bad_feeds_are_one_line_errors_naming_the_feed(real_frames, real_model, predictors):
    from mtl_bt.errors import CheckpointError, DataError

    aapl = real_frames["AAPL"]
    same_time = aapl.copy()
    same_time.index = pd.DatetimeIndex([aapl.index[0]] * len(aapl), name="datetime")
    with pytest.raises(DataError, match=r"feed 'X': bar 1 .* same time .*zero spacing"):
        _run_one(same_time, real_model)
    with pytest.raises(DataError, match=r"feed 'X': 1 bar\(s\)"):
        _run_one(aapl.iloc[:1], real_model)
    nan_close = aapl.copy()
    nan_close.iloc[100, nan_close.columns.get_loc("close")] = np.nan
    with pytest.raises(DataError, match=r"feed 'X': close is nan at 2009-10-21.*\(row 100\)"):
        _run_one(nan_close, real_model)
    # a model with an asset embedding must know which asset a feed is
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=aapl))  # no name
    cerebro.addstrategy(MTLStrategy, predictor=predictors)
    with pytest.raises(CheckpointError, match=r"feed 'data0' has no name.*asset embedding"):
        cerebro.run()


def test_the_strategy_parts_work_alone(real_frames):
    """bars, fold schedule and rebalancer, without a Cerebro."""
    from mtl_bt.backtesting.bars import datenum_index
    from mtl_bt.backtesting.feeds import bt_datenums
    from mtl_bt.backtesting.folds import NO_FOLD, FoldSchedule
    from mtl_bt.backtesting.rebalancer import Holding, Rebalancer

    index = real_frames["BTC/USDT"].index
    assert datenum_index(bt_datenums(index)).equals(index)

    class P:
        def __init__(self, **fold):
            self.fold = fold

    sched = FoldSchedule(
        [
            P(train_end="2024-01-01", test_start="2024-01-02", test_end="2024-01-10"),
            P(train_end="2024-01-05", test_start="2024-01-06", test_end="2024-01-20"),
        ]
    )
    nums = bt_datenums(
        pd.DatetimeIndex(["2024-01-01", "2024-01-03", "2024-01-07", "2024-02-01"], tz="UTC")
    )
    assert sched.rows(nums).tolist() == [NO_FOLD, 0, 1, NO_FOLD]
    assert [sched.at(x) for x in nums] == sched.rows(nums).tolist()

    reb = Rebalancer(max_gross_leverage=1.0, min_trade_weight=0.01, commission=0.0, slippage=0.0)
    np.testing.assert_allclose(reb.cap(np.array([0.5, -0.5]), other_gross=0.5), [0.25, -0.25])
    hold = [Holding("A", position=10.0, price=10.0), Holding("B", position=0.0, price=5.0)]
    # A: 10% -> 10.5% is inside the no-trade band; B: 0 -> 50% buys 100 units
    assert reb.orders(hold, np.array([0.105, 0.5]), value=1000.0, cash=900.0) == [(1, 100.0)]
    # a flip sells first; buys are scaled to 99% of the cash the sells free
    orders = reb.orders(hold, np.array([-0.1, 0.9]), value=1000.0, cash=0.0)
    assert orders[0] == (0, -20.0)
    assert orders[1][0] == 1 and orders[1][1] * 5.0 == pytest.approx(0.99 * 200.0)
