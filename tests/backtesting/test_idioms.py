"""Backtrader idioms a user reaches for give the right answer or a clear refusal.

Real Backtrader runs with the real 3-fold daily model of conftest (``trained``) and the
real AAPL model; each test names the idiom of docs/backtesting.md ("Backtrader idioms").
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd

from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
from mtl_bt.backtesting.runner import make_cerebro
from mtl_bt.config import BacktestConfig
from mtl_bt.strategies import MTLStrategy


def run(feeds, predictors, cerebro=None, **params):
    """MTLStrategy over ``[(name, feed), ...]`` with the CLI's broker: (strategy, orders, value)."""
    cerebro = cerebro or make_cerebro({}, BacktestConfig())
    for name, feed in feeds:
        cerebro.adddata(feed, name=name)
    cerebro.addstrategy(MTLStrategy, predictor=predictors, **params)
    cerebro.addanalyzer(PortfolioAnalyzer, _name="p")
    strat = cerebro.run()[0]
    orders = pd.DataFrame(strat.analyzers.p.get_analysis()["orders"])
    return strat, orders, cerebro.broker.getvalue()


def daily_csv(frame: pd.DataFrame, path) -> bt.feeds.GenericCSVData:
    """A daily CSV as Backtrader users read it: dates only, so Backtrader stamps each bar at
    the session end (23:59:59.999989), not at midnight like the frame."""
    df = frame.tz_convert(None).reset_index()
    df["datetime"] = df["datetime"].dt.strftime("%Y-%m-%d")
    df[["datetime", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return bt.feeds.GenericCSVData(
        dataname=str(path),
        dtformat="%Y-%m-%d",
        timeframe=bt.TimeFrame.Days,
        datetime=0,
        open=1,
        high=2,
        low=3,
        close=4,
        volume=5,
        openinterest=-1,
        time=-1,
    )


def _by_date(orders: pd.DataFrame) -> pd.DataFrame:
    """Orders with each time reduced to its date (a session-end stamp and midnight agree)."""
    out = orders.copy()
    out["datetime"] = [int(d) for d in out["datetime"]]
    return out


# -- 1. daily bars stamped at the session end ------------------------------------------
def test_session_end_daily_stamps_map_to_the_same_folds_and_orders(frames, predictors, tmp_path):
    pandas = run([(s, bt.feeds.PandasData(dataname=f)) for s, f in frames.items()], predictors)
    csv = run([(s, daily_csv(f, tmp_path / f"{s}.csv")) for s, f in frames.items()], predictors)
    stamps = csv[0].frames[0].index
    assert (stamps.hour == 23).all()  # Backtrader's session-end stamp, not midnight
    assert len(pandas[1]) > 20
    pd.testing.assert_frame_equal(_by_date(pandas[1]), _by_date(csv[1]))
    assert pandas[2] == csv[2]
    # the same fold decided every bar
    assert [(int(t), k) for t, k in pandas[0].used_folds] == [
        (int(t), k) for t, k in csv[0].used_folds
    ]


def test_fold_schedule_compares_daily_bars_by_their_date():
    """A daily model's fold windows hold whole days: a bar stamped late on test_end is inside,
    a bar stamped late on train_end is still the training bar (never decided by that model)."""
    import numpy as np

    from mtl_bt.backtesting.feeds import bt_datenums
    from mtl_bt.backtesting.folds import NO_FOLD, FoldSchedule

    class P:
        def __init__(self, timeframe, **fold):
            self.fold = fold
            self.timeframe = timeframe

    def sched(timeframe):
        return FoldSchedule(
            [
                P(
                    timeframe,
                    train_end="2024-01-01",
                    test_start="2024-01-02",
                    test_end="2024-01-10",
                ),
                P(
                    timeframe,
                    train_end="2024-01-10",
                    test_start="2024-01-11",
                    test_end="2024-01-20",
                ),
            ]
        )

    late = pd.DatetimeIndex(
        ["2024-01-01 23:59:59.999989", "2024-01-10 23:59:59.999989", "2024-01-20 23:59:59.999989"],
        tz="UTC",
    )
    nums = bt_datenums(late)
    daily = sched("1d")
    assert daily.rows(nums).tolist() == [NO_FOLD, 0, 1]
    assert [daily.at(x) for x in nums] == [NO_FOLD, 0, 1]
    hourly = sched("1h")  # intraday windows keep their exact times
    assert hourly.rows(nums).tolist() == [NO_FOLD, NO_FOLD, NO_FOLD]
    assert np.array_equal([hourly.at(x) for x in nums], hourly.rows(nums))
