"""Backtrader idioms a user reaches for give the right answer or a clear refusal.

Real Backtrader runs with the real 3-fold daily model of conftest (``trained``) and the
real AAPL model; each test names the idiom of docs/backtesting.md ("Backtrader idioms").
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest

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
    weekly = sched("1w")  # weekly bars (Backtrader stamps them at the session end too)
    assert weekly.rows(nums).tolist() == [NO_FOLD, 0, 1]
    hourly = sched("1h")  # intraday windows keep their exact times
    assert hourly.rows(nums).tolist() == [NO_FOLD, NO_FOLD, NO_FOLD]
    assert np.array_equal([hourly.at(x) for x in nums], hourly.rows(nums))


# -- 2. one bar's orders: sells first, buys fitted to the cash at the fill ---------------
def test_feed_order_cannot_change_the_result(read_stock, real_model):
    """Three stocks held long and fully invested (vol_managed, capped to a gross of 1): on a
    gap-up the buys of one bar cost more at the fill than at the sizing close, and the buy
    Backtrader filled last was refused for cash (8 refusals, 6 orders of the feeds gave 3
    final values). Now every order of the feeds gives one result and no buy is refused."""
    import itertools

    names = ["AAPL", "MSFT", "IBM"]
    frames = {s: read_stock(s).loc["2009-06-01":"2010-06-30"] for s in names}
    results = {}
    for order in itertools.permutations(names):
        feeds = [(s, bt.feeds.PandasData(dataname=frames[s])) for s in order]
        strat, orders, value = run(
            feeds, real_model, signal="vol_managed", max_weight=0.5, rebalance="bar"
        )
        results[order] = (value, orders)
    (value0, orders0), *others = results.values()
    assert len(orders0) > 50
    assert (orders0["status"] == "completed").all(), orders0["status"].value_counts()
    for value, orders in others:
        # the same orders (sells first, then buys, each side by name); sums over the feeds
        # run in feed order, so values agree to float rounding (1e-16 relative seen)
        pd.testing.assert_frame_equal(orders, orders0, rtol=1e-12)
        assert value == pytest.approx(value0, rel=1e-12, abs=0)


def test_feed_order_cannot_change_the_result_on_torch(read_stock, real_model, monkeypatch):
    """The torch path (no ONNX Runtime): a row's output may depend on its place in the
    batch, and a live decision's batch followed the feed order. The engine batches the due
    rows by feed name: every permutation of 3 feeds gives the same orders and one final value
    (before: 5 values, up to 6e-9 relative apart; now only the broker's sum over the feeds
    in feed order differs, 1e-16 relative, as on ONNX Runtime above)."""
    import itertools

    from mtl_bt.predictor import Predictor

    monkeypatch.setenv("MTL_BT_TORCH_INFERENCE", "1")
    torch_model = [Predictor(real_model[0].checkpoint)]
    assert torch_model[0].backend == "torch"
    names = ["AAPL", "MSFT", "IBM"]
    frames = {s: read_stock(s).loc["2009-06-01":"2010-06-30"] for s in names}
    values = {}
    for order in itertools.permutations(names):
        feeds = [(s, bt.feeds.PandasData(dataname=frames[s])) for s in order]
        strat, orders, value = run(
            feeds, torch_model, signal="vol_managed", max_weight=0.5, rebalance="bar"
        )
        assert strat.decisions > 50
        values[order] = (value, orders)
    (value0, orders0), *others = values.values()
    for value, orders in others:
        pd.testing.assert_frame_equal(orders, orders0, rtol=1e-12)
        assert value == pytest.approx(value0, rel=1e-12, abs=0)


# -- 3. a model where it does not belong: one-line refusals -------------------------------
def _pandas(frames):
    return [(s, bt.feeds.PandasData(dataname=f)) for s, f in frames.items()]


@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "streaming"])
def test_refusals_name_the_problem(frames, predictors, preload):
    from mtl_bt.data.synthetic import garch_bars
    from mtl_bt.errors import DataError

    def refused(feeds, match):
        cerebro = make_cerebro({}, BacktestConfig())
        cerebro.p.preload = preload
        with pytest.raises(DataError, match=match) as err:
            run(feeds, predictors, cerebro=cerebro)
        assert "\n" not in str(err.value)

    # every bar before the first test window (the models' training bars)
    early = {s: f.iloc[:150] for s, f in frames.items()}
    refused(_pandas(early), r"no bar of the feeds \(.*\) is inside a test window of the models")
    # hourly bars for a model trained on daily bars: both sizes named
    hourly = {s: garch_bars(400, seed=i, symbol=s, freq="1h") for i, s in enumerate(frames)}
    refused(_pandas(hourly), r"feed 'AAA' has 1h bars but the model was trained on 1d bars")
    # fewer bars than the warm-up + 1, inside the last test window
    need = predictors[0].feature_spec.warmup() + 1
    short = {s: f.iloc[-(need - 1) :] for s, f in frames.items()}
    refused(_pandas(short), rf"feed 'AAA': {need - 1} bars.*needs {need} \(its features' warm-up")
    # one bar more is enough: it decides (and trades or not) without an error
    enough = {s: f.iloc[-need:] for s, f in frames.items()}
    cerebro = make_cerebro({}, BacktestConfig())
    cerebro.p.preload = preload
    assert run(_pandas(enough), predictors, cerebro=cerebro)[0].decisions >= 1


def test_from_config_refuses_a_config_that_is_not_the_models(trained, config_factory):
    from mtl_bt.errors import CheckpointError

    train_dir, cfg, _ = trained
    MTLStrategy.from_config(cfg, train_dir)  # the model's own config
    other = config_factory(features={"names": ["log_return", "rsi"]})
    with pytest.raises(CheckpointError, match=r"does not match the config \(features: model only"):
        MTLStrategy.from_config(other, train_dir)
    tasks = config_factory(tasks=[{"name": "return", "horizons": [1]}])
    with pytest.raises(CheckpointError, match=r"does not match the config \(tasks: config"):
        MTLStrategy.from_config(tasks, train_dir)


def test_cli_refuses_too_few_bars_with_exit_2(tmp_path, trained, frames):
    from click.testing import CliRunner

    from mtl_bt.cli import main
    from mtl_bt.data import write_frame

    train_dir, _, _ = trained
    args = ["backtest", str(train_dir / "config.toml"), "--model", str(train_dir)]
    for symbol, frame in frames.items():
        path = tmp_path / f"{symbol}.csv"
        write_frame(frame.iloc[-5:], path)
        args += ["--data", str(path)]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "feed 'AAA': 5 bars" in res.output and "Traceback" not in res.output


# -- 4. optstrategy: the model set is ONE value ------------------------------------------
def _opt_values(frames, predictor, maxcpus):
    cerebro = make_cerebro({}, BacktestConfig())
    cerebro.p.maxcpus = maxcpus
    for s, f in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=f), name=s)
    cerebro.optstrategy(MTLStrategy, predictor=predictor, max_weight=[0.3, 0.5])
    cerebro.addanalyzer(PortfolioAnalyzer, _name="p")
    runs = cerebro.run()
    return {r[0].p.max_weight: r[0].analyzers.p.get_analysis()["value"][-1] for r in runs}


def test_optstrategy_runs_once_per_combination_of_the_other_parameters(trained, frames):
    """A run directory, or Models([...]) of the fold checkpoints or loaded Predictors, is one
    value: 2 runs for max_weight=[0.3, 0.5], each equal to its single run, in this process
    and in 2 worker processes (Models pickles the paths, not the models)."""
    from mtl_bt.backtesting import Models
    from mtl_bt.backtesting.runner import load_predictors

    train_dir = trained[0]
    single = {}
    for mw in (0.3, 0.5):
        _, _, single[mw] = run(_pandas(frames), str(train_dir), max_weight=mw)
    assert single[0.3] != single[0.5]
    folds = sorted((train_dir / "checkpoints").glob("fold_*.pt"))
    assert _opt_values(frames, str(train_dir), maxcpus=1) == single
    assert _opt_values(frames, Models(folds), maxcpus=1) == single
    assert _opt_values(frames, Models(load_predictors(train_dir)), maxcpus=2) == single


def test_optstrategy_iterating_a_fold_list_is_refused(trained, frames):
    from mtl_bt.errors import UserError

    folds = [str(p) for p in sorted((trained[0] / "checkpoints").glob("fold_*.pt"))]
    with pytest.raises(UserError, match=r"one fold model \(fold_000.pt\) of a run with 3 folds"):
        _opt_values(frames, folds, maxcpus=1)


# -- 5. a sizer and cheat_on_open --------------------------------------------------------
def _stocks(read_stock):
    names = ["AAPL", "MSFT", "IBM"]
    return {s: read_stock(s).loc["2009-06-01":"2010-06-30"] for s in names}


def test_an_added_sizer_is_warned_about_not_ignored(read_stock, real_model):
    import warnings

    frames = _stocks(read_stock)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning without a sizer
        _, plain, value = run(_pandas(frames), real_model, signal="vol_managed")
    cerebro = make_cerebro({}, BacktestConfig())
    cerebro.addsizer(bt.sizers.PercentSizer, percents=10)
    with pytest.warns(UserWarning, match=r"addsizer\(PercentSizer\) is not used by MTLStrategy"):
        _, orders, sized = run(_pandas(frames), real_model, cerebro=cerebro, signal="vol_managed")
    pd.testing.assert_frame_equal(orders, plain)
    assert sized == value


def test_cheat_on_open_sizes_from_the_open_and_fills_there(read_stock, real_model):
    """cheat_on_open=True is honoured: the close's decision is sized from the next bar's open
    (no warning) and filled at that open; on the gap-ups of the feed-order test no order is
    refused (sized at the close, Backtrader's cash check at the open refused 7)."""
    import warnings

    frames = _stocks(read_stock)
    cerebro = make_cerebro({}, BacktestConfig())
    cerebro.p.cheat_on_open = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strat, orders, _ = run(
            _pandas(frames),
            real_model,
            cerebro=cerebro,
            signal="vol_managed",
            max_weight=0.5,
            rebalance="bar",
        )
    assert len(orders) > 50 and (orders["status"] == "completed").all()
    slip = BacktestConfig().slippage
    for o in strat.broker.orders:
        d = o.data
        bar = list(d.datetime.array).index(o.executed.dt)
        assert o.created.dt == o.executed.dt  # sent at the open of the bar it fills on
        assert bar > 0 and strat.decisions  # after a decision on the bar before
        open_, high, low = d.open.array[bar], d.high.array[bar], d.low.array[bar]
        want = min(open_ * (1 + slip), high) if o.isbuy() else max(open_ * (1 - slip), low)
        assert o.executed.price == pytest.approx(want, rel=1e-12)


# -- 6. writers ----------------------------------------------------------------------------
def test_a_writer_gets_a_compact_record(frames, predictors):
    import io

    out = io.StringIO()
    cerebro = make_cerebro({}, BacktestConfig())
    cerebro.addwriter(bt.WriterFile, csv=True, out=out)
    strat, orders, value = run(_pandas(frames), list(predictors), cerebro=cerebro)
    text = out.getvalue()
    section = text[text.index("- Analyzers:") :]
    assert len(section) < 2_000, len(section)  # the per-bar record was 115,204 characters here
    assert f"- bars: {len(frames['AAA'])}" in section
    assert f"- end_value: {value}" in section
    assert f"- completed: {(orders['status'] == 'completed').sum()}" in section
    assert "- dt:" not in section and "- equity:" not in section
    assert "- predictor: [3 items: Predictor(" in text  # not three object reprs
    # get_analysis itself keeps the whole record for code
    assert len(strat.analyzers.p.get_analysis()["dt"]) == len(frames["AAA"])
