"""MTLPredictions: a model's predictions as Backtrader lines.

Real Backtrader runs and real trained models: the lines equal the training run's
out-of-sample predictions (predictions.parquet) on every feed kind, the streaming and
the preloaded paths give the same bits, changing the future changes no past value, and
MTLStrategy trades exactly what its indicators show.
"""

from __future__ import annotations

import datetime
import pickle
import re
import sys
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mtl_bt.backtesting.bars import datenum_index
from mtl_bt.errors import CheckpointError, UserError
from mtl_bt.indicators import MTLPredictions, line_name, lines_class

sys.path.insert(0, str(Path(__file__).parent))
from test_streaming import FOUR_HOURS, LiveFrameFeed, _resampled_by_pandas  # noqa: E402

LINES = ("return_1", "return_3", "direction_1", "volatility_1", "fold")


class Holder(bt.Strategy):
    """A user's strategy holding one MTLPredictions per feed."""

    params = (("model", None), ("any_bar_size", False))

    def __init__(self) -> None:
        p = self.p
        self.preds = [
            MTLPredictions(d, model=p.model, any_bar_size=p.any_bar_size) for d in self.datas
        ]


def run(feeds: dict, model, *, how: str = "adddata", any_bar_size=False, **cerebro_kwargs):
    cerebro = bt.Cerebro(stdstats=False, **cerebro_kwargs)
    for name, feed in feeds.items():
        if how == "replay":
            cerebro.replaydata(feed, name=name, **FOUR_HOURS)
        else:
            cerebro.adddata(feed, name=name)
    cerebro.addstrategy(Holder, model=model, any_bar_size=any_bar_size)
    return cerebro.run()[0]


def lines_of(strat) -> dict[str, pd.DataFrame]:
    """Every line of every indicator after the run, by bar time (UTC)."""
    out = {}
    for ind in strat.preds:
        n = len(ind.data)
        index = datenum_index(np.asarray(ind.data.datetime.array[:n]))
        names = ind.lines.getlinealiases()
        cols = {
            k: np.asarray(ind.lines[i].array[:n], dtype=np.float64) for i, k in enumerate(names)
        }
        out[ind.data._name] = pd.DataFrame(cols, index=index)
    return out


def _csv_feed(frame: pd.DataFrame, path: Path) -> bt.feeds.GenericCSVData:
    df = frame.tz_convert(None).reset_index()
    df["datetime"] = df["datetime"].dt.strftime("%Y-%m-%d")
    df[["datetime", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return bt.feeds.GenericCSVData(
        dataname=str(path),
        dtformat="%Y-%m-%d",
        openinterest=-1,
        time=-1,
        timeframe=bt.TimeFrame.Days,
        sessionend=datetime.time(0, 0),
    )


def _feeds(frames, kind: str, tmp_path: Path) -> tuple[dict, dict]:
    """(feeds, cerebro kwargs) of one feed kind over the same bars."""
    if kind == "csv_daily":
        return {s: _csv_feed(f, tmp_path / f"{s}.csv") for s, f in frames.items()}, {}
    if kind == "live":
        feeds = {s: LiveFrameFeed(dataname=f) for s, f in frames.items()}
        return feeds, {}
    feeds = {s: bt.feeds.PandasData(dataname=f) for s, f in frames.items()}
    kwargs = {"preload_false": {"preload": False}, "runonce_false": {"runonce": False}}
    return feeds, kwargs.get(kind, {})


@pytest.fixture(scope="module")
def reference(frames, trained):
    """Lines of the default run: PandasData, preloaded, runonce (the vectorised once())."""
    strat = run({s: bt.feeds.PandasData(dataname=f) for s, f in frames.items()}, trained[0])
    return strat, lines_of(strat)


def test_one_line_per_task_head_and_fold(reference, trained):
    strat, _ = reference
    ind = strat.preds[0]
    assert isinstance(ind, bt.Indicator) and isinstance(ind, MTLPredictions)
    assert ind.lines.getlinealiases() == LINES
    assert type(ind) is lines_class(LINES[:-1])  # one class per set of task names
    assert line_name("return@24") == "return_24" and line_name("vol-x@3") == "vol_x_3"
    assert [ind.symbol for ind in strat.preds] == ["AAA", "BBB"]


@pytest.mark.parametrize("kind", ["pandas", "preload_false", "runonce_false", "csv_daily", "live"])
def test_lines_equal_the_runs_predictions_on_every_feed_kind(
    kind, frames, trained, reference, tmp_path
):
    """Every out-of-sample bar of predictions.parquet: the same value on the indicator's
    line (within float32 noise: the run predicted with torch, the indicator with the
    compiled kernel) and the same fold; every other bar NaN. Each feed kind's lines equal
    the preloaded vectorised run's bit for bit (streaming = preloaded)."""
    out, _, result = trained
    feeds, kwargs = _feeds(frames, kind, tmp_path)
    got = reference[1] if kind == "pandas" else lines_of(run(feeds, out, **kwargs))
    parquet = result.predictions
    for symbol, lines in got.items():
        pd.testing.assert_frame_equal(lines, reference[1][symbol], check_exact=True)
        want = parquet[parquet["symbol"] == symbol].set_index("datetime")
        assert len(want) > 200
        at = lines.loc[pd.DatetimeIndex(want.index)]
        for task in ("return@1", "return@3", "direction@1", "volatility@1"):
            np.testing.assert_allclose(
                at[line_name(task)], want[task], rtol=1e-5, atol=1e-6, err_msg=task
            )
        np.testing.assert_array_equal(at["fold"], want["fold"].astype(float))
        outside = lines.drop(index=pd.DatetimeIndex(want.index))
        assert outside.isna().all().all()  # warm-up, before the first window, purge gaps


def test_replayed_lines_equal_the_lines_of_the_completed_bars(crypto_frames, real_model):
    """replaydata updates a bar tick by tick: the lines hold a value only on the tick that
    completes it, and that value is the one of the completed (pandas-resampled) bar (a
    daily model on 4h bars: any_bar_size=True, the lines are what is compared)."""
    hourly = crypto_frames["BTC/USDT"].iloc[:1200]
    four = _resampled_by_pandas(hourly)
    completed = lines_of(
        run({"BTC/USDT": bt.feeds.PandasData(dataname=four)}, real_model, any_bar_size=True)
    )
    replayed = lines_of(
        run(
            {"BTC/USDT": bt.feeds.PandasData(dataname=hourly)},
            real_model,
            how="replay",
            any_bar_size=True,
        )
    )
    a, b = completed["BTC/USDT"], replayed["BTC/USDT"]
    common = a.index.intersection(b.index)
    assert len(common) >= len(a) - 1 and a.loc[common, "return_1"].notna().sum() > 200
    pd.testing.assert_frame_equal(a.loc[common], b.loc[common], check_exact=True)


@pytest.mark.parametrize("preload", [True, False])
def test_perturbed_future_leaves_every_value_up_to_t_unchanged(frames, trained, preload):
    cut = frames["AAA"].index[400]
    rng = np.random.default_rng(3)
    noisy = {}
    for s, f in frames.items():
        g = f.copy()
        after = g.index > cut
        g.loc[after, ["open", "high", "low", "close", "volume"]] *= rng.uniform(
            0.8, 1.25, (int(after.sum()), 1)
        )
        g["high"] = g[["open", "high", "low", "close"]].max(axis=1)
        g["low"] = g[["open", "high", "low", "close"]].min(axis=1)
        noisy[s] = g
    base = lines_of(
        run(
            {s: bt.feeds.PandasData(dataname=f) for s, f in frames.items()},
            trained[0],
            preload=preload,
        )
    )
    pert = lines_of(
        run(
            {s: bt.feeds.PandasData(dataname=f) for s, f in noisy.items()},
            trained[0],
            preload=preload,
        )
    )
    for s in frames:
        pd.testing.assert_frame_equal(base[s].loc[:cut], pert[s].loc[:cut], check_exact=True)
        later_a, later_b = base[s].loc[cut:].iloc[1:], pert[s].loc[cut:].iloc[1:]
        assert not later_a.equals(later_b)  # the perturbation reached the model


def test_a_model_with_an_asset_embedding_refuses_an_unnamed_feed(frames, trained):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frames["AAA"]))  # no name
    cerebro.addstrategy(Holder, model=trained[0])
    with pytest.raises(CheckpointError, match=r"feed 'data0' has no name.*asset embedding"):
        cerebro.run()


def test_bad_model_and_data_are_one_line_errors(frames, trained):
    class OnALine(bt.Strategy):
        def __init__(self) -> None:
            MTLPredictions(self.data.close, model=trained[0])

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frames["AAA"]), name="AAA")
    cerebro.addstrategy(OnALine)
    with pytest.raises(UserError, match="needs a data feed"):
        cerebro.run()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frames["AAA"]), name="AAA")
    cerebro.addstrategy(Holder, model=None)
    with pytest.raises(UserError, match="needs model="):
        cerebro.run()


def test_a_standalone_indicator_refuses_feeds_the_model_does_not_belong_on(frames, trained):
    """In a user's own strategy (no MTLStrategy) the same one-line refusals, before the
    run: no bar in any test window (the lines were all NaN, silently), another bar size than
    the model's (both named; any_bar_size=True gives lines anyway), fewer bars than the
    warm-up + 1."""
    from mtl_bt.backtesting.runner import load_predictors
    from mtl_bt.data.synthetic import garch_bars
    from mtl_bt.errors import DataError

    class Mine(bt.Strategy):
        params = (("any_bar_size", False),)

        def __init__(self) -> None:
            self.preds = [
                MTLPredictions(d, model=trained[0], any_bar_size=self.p.any_bar_size)
                for d in self.datas
            ]

    def go(feeds, **params):
        cerebro = bt.Cerebro(stdstats=False)
        for s, f in feeds.items():
            cerebro.adddata(bt.feeds.PandasData(dataname=f), name=s)
        cerebro.addstrategy(Mine, **params)
        return cerebro.run()[0]

    def refused(feeds, match):
        with pytest.raises(DataError, match=match) as err:
            go(feeds)
        assert "\n" not in str(err.value)

    refused(
        {s: f.iloc[:150] for s, f in frames.items()},
        r"no bar of the feeds \(.*\) is inside a test window of the models",
    )
    hourly = {  # inside the last test window, so only the bar size is wrong
        s: garch_bars(400, seed=i, symbol=s, freq="1h", start="2011-03-01")
        for i, s in enumerate(frames)
    }
    refused(
        hourly,
        r"feed 'AAA' has 1h bars but the model was trained on 1d bars.*"
        r"MTLPredictions\(data, model=\.\.\., any_bar_size=True\)",
    )
    need = load_predictors(trained[0])[0].feature_spec.warmup() + 1
    refused(
        {s: f.iloc[-(need - 1) :] for s, f in frames.items()},
        rf"feed 'AAA': {need - 1} bars, but the model needs {need}",
    )
    # the escape hatch, and one bar more than too few: lines, no error
    anyway = lines_of(go(hourly, any_bar_size=True))
    assert np.isfinite(anyway["AAA"]["return_1"]).sum() > 100
    enough = go({s: f.iloc[-need:] for s, f in frames.items()})
    assert np.isfinite(lines_of(enough)["AAA"]["fold"]).sum() >= 1


def test_the_generated_class_pickles_by_its_task_names(reference):
    cls = type(reference[0].preds[0])
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert pickle.loads(pickle.dumps(MTLPredictions)) is MTLPredictions
    other = lines_class(("a_1", "b_2"))
    assert pickle.loads(pickle.dumps(other)) is other and other is not cls
    assert other.lines.getlinealiases() == ("a_1", "b_2", "fold")


def test_cerebro_plot_gives_each_head_family_its_own_subplot(frames, trained, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frames["AAA"]), name="AAA")
    cerebro.addstrategy(Holder, model=trained[0])
    strat = cerebro.run()[0]
    fig = cerebro.plot(iplot=False)[0][0]
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]
    # return (return_1, return_3), direction, volatility: one subplot each, below the data
    for family in ("return (AAA)", "direction (AAA)", "volatility (AAA)"):
        assert any(label.startswith(family) for label in labels), labels
    assert sum("return_3" in label for label in labels) == 1
    assert not any(label.endswith("fold") for label in labels)
    assert len(strat.preds[0]._plot_views) == 2


def test_mtl_strategy_trades_what_its_indicators_show(frames, trained):
    """The strategy is built on the indicator: every decision's predictions are its
    indicators' line values on that bar."""
    from mtl_bt.backtesting.runner import run_backtest
    from mtl_bt.config import BacktestConfig

    res = run_backtest(frames, trained[0], BacktestConfig(rebalance="bar"), record=True)
    strat = res.strategy
    assert all(isinstance(p, MTLPredictions) for p in strat.predictions)
    shown = lines_of(type("S", (), {"preds": strat.predictions})())
    checked = 0
    for dt, assets, preds in strat.predictions_log:
        when = datenum_index(np.array([dt]))[0]
        for i, a in enumerate(assets):
            row = shown[strat.symbols[a]].loc[when]
            for task, values in preds.items():
                assert values[i] == row[line_name(task)]
                checked += 1
    assert checked > 500


@pytest.fixture(scope="module")
def daily_horizon_run(tmp_path_factory, frames, config_factory):
    """A real 3-fold run predicting return@24 and direction@24 (the demo's task names)."""
    from mtl_bt.training.pipeline import train_walk_forward

    cfg = config_factory(
        tasks=[{"name": "return", "horizons": [24]}, {"name": "direction", "horizons": [24]}]
    )
    out = tmp_path_factory.mktemp("train_24")
    train_walk_forward(cfg, frames, out)
    return out


def test_readme_strategy_snippet_runs(frames, daily_horizon_run):
    """README's own-strategy example (a gated SMA crossover) runs as written."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"<!-- snippet: mtl-predictions -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README.md lacks the MTLPredictions snippet"
    code = block.group(1)
    assert len([x for x in code.splitlines() if x.strip()]) <= 20
    gated = {}
    for threshold in ("0.5", "0.0"):  # as written; a looser gate this tiny model passes
        namespace: dict = {}
        exec(compile(code.replace("> 0.5", f"> {threshold}"), "README.md", "exec"), namespace)

        class Spy(namespace["GatedCross"]):
            entries: list = []

            def order_target_percent(self, *args, **kwargs):
                self.entries.append((self.gate.return_24[0], self.gate.direction_24[0]))
                return super().order_target_percent(*args, **kwargs)

        Spy.entries = []
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=frames["AAA"]), name="AAA")
        cerebro.addstrategy(Spy, model=str(daily_horizon_run))
        strat = cerebro.run()[0]
        assert np.isfinite(np.asarray(strat.gate.return_24.array)).sum() > 100
        for ret, direction in Spy.entries:  # every entry had the model's agreement
            assert ret > 0 and direction > float(threshold)
        gated[threshold] = (len(Spy.entries), cerebro.broker.getvalue())
    assert gated["0.0"][0] > 0 and gated["0.0"][1] != 10_000.0  # it traded


@pytest.mark.parametrize(
    "exactbars", [-1]
)  # 1: Backtrader's broker fails on these mixed feeds (main too)
def test_mtl_strategy_with_exactbars_trades_as_the_preloaded_run(
    exactbars, real_frames, real_model
):
    """exactbars=-1 turns runonce off and trims the lines (the indicators' too): the
    strategy, reading its indicators bar by bar, places the same orders."""
    from test_any_feed import _same_run, run_feeds

    from mtl_bt.backtesting import frame_feed

    feeds = {s: frame_feed(f, name=s) for s, f in real_frames.items()}
    reference = run_feeds(feeds, real_model)
    feeds = {s: frame_feed(f, name=s) for s, f in real_frames.items()}
    got = run_feeds(feeds, real_model, cerebro_kwargs={"exactbars": exactbars})
    assert not got[0]._arrays and reference[0]._arrays  # bar by bar (no runonce)
    _same_run(reference, got)


def _reads(indicators) -> list[tuple]:
    """What a strategy reads off each indicator's lines on this bar: length, index, [0] and
    [-1] of every line."""
    seen = []
    for ind in indicators:
        if not len(ind):
            seen.append((0, ind.lines[0].idx))
            continue
        lines = ind.lines.lines
        back = [line[-1] for line in lines] if len(ind) > 1 else []
        seen.append((len(ind), ind.lines[0].idx, *(line[0] for line in lines), *back))
    return seen


class _Reader(Holder):
    """Records what a user's strategy reads off the lines on every bar."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple] = []

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        self.seen.extend(_reads(self.preds))


@pytest.mark.parametrize("kwargs", [{}, {"runonce": False}, {"exactbars": 1}])
def test_the_lines_own_advance_and_forward_equal_backtraders(frames, trained, monkeypatch, kwargs):
    """MTLPredictions moves its lines' indexes in place (advance, forward); what a strategy
    reads on every bar (lengths, indexes, [0] and [-1]) equals Backtrader's own methods,
    with feeds of different lengths (a clock ahead of the indicator)."""
    uneven = dict(frames)
    first = next(iter(uneven))
    uneven[first] = uneven[first].iloc[40:]

    def reads() -> list[tuple]:
        cerebro = bt.Cerebro(stdstats=False, **kwargs)
        for name, frame in uneven.items():
            cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
        cerebro.addstrategy(_Reader, model=trained[0])
        return cerebro.run()[0].seen

    fast = reads()
    monkeypatch.setattr(MTLPredictions, "advance", bt.Indicator.advance)
    monkeypatch.setattr(MTLPredictions, "forward", bt.LineSeries.forward)
    slow = reads()
    assert len(fast) > 500 and any(np.isfinite(v).all() for v in fast)
    assert repr(fast) == repr(slow)  # repr: NaN equals NaN, every bit of every float shown


class _MTLReader:
    """Mixed into MTLStrategy: records what a subclass reads off its own predictions (and a
    user indicator built on one of their lines) on every bar, and what it trades."""

    def __init__(self) -> None:
        super().__init__()
        self.smooth = bt.ind.SMA(self.predictions[-1].lines[0], period=3)
        self.seen: list[tuple] = []

    def _record(self) -> None:
        self.seen.extend(_reads(self.predictions))
        self.seen.append((len(self.smooth), self.smooth[0] if len(self.smooth) else None))
        self.stepped = bool(self._following)  # its own lines follow their feeds

    def prenext(self) -> None:
        self._record()
        super().prenext()

    def next(self) -> None:
        self._record()
        super().next()


@pytest.mark.parametrize("mode", ["precomputed", "live"])
def test_mtl_strategy_own_lines_follow_their_feeds_as_backtrader_advances_them(
    frames, trained, mode
):
    """MTLStrategy's own indicators' lines read their length and index off their feeds
    (runonce) instead of Backtrader's per-indicator advance on every bar: a subclass reads the same lengths, indexes, [0]
    and [-1] on every bar (feeds of different lengths), a user indicator on one of those
    lines sees the same values, the orders are the same, and after the run the indicators
    are back in Backtrader's list in their places."""
    from mtl_bt.strategies.mtl import MTLStrategy

    uneven = dict(frames)
    first = next(iter(uneven))
    uneven[first] = uneven[first].iloc[40:]

    def run_reader(own: bool):
        reader = type("Reader", (_MTLReader, MTLStrategy), {"follow_own_lines": own})
        cerebro = bt.Cerebro(stdstats=False)
        for name, frame in uneven.items():
            cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
        cerebro.addstrategy(reader, model=trained[0], mode=mode, rebalance="bar")
        return cerebro.run()[0]

    fast, slow = run_reader(True), run_reader(False)
    assert len(fast.seen) > 500 and any(len(v) > 4 and np.isfinite(v[2:]).all() for v in fast.seen)
    assert repr(fast.seen) == repr(slow.seen)  # NaN equals NaN, every bit shown
    assert [(o.data._name, o.created.size) for o in fast.broker.orders] == [
        (o.data._name, o.created.size) for o in slow.broker.orders
    ]
    assert len(fast.broker.orders) > 0
    assert fast.stepped and not slow.stepped
    assert fast._following is None and not fast._own_taken  # put back after the run
    for ind in fast.predictions:  # plain buffers again, at their feeds' lengths
        for line in ind.lines.lines:
            assert type(line) is bt.linebuffer.LineBuffer
            assert (len(line), line.idx) == (len(ind.data), len(ind.data) - 1)
    for strat in (fast, slow):  # the predictions first (made first), then the SMA
        listed = [id(i) for i in strat.getindicators()]
        assert listed == [id(i) for i in (*strat.predictions, strat.smooth)]


@pytest.mark.parametrize("stated", [False, True], ids=["spacing", "timeframe"])
def test_streaming_feeds_of_another_bar_size_are_refused_before_any_prediction(
    frames, trained, stated
):
    """preload=False (the path of replay, resampling and paper runs): bars of another size
    than the model's are refused as soon as the size can be told: before the run when the
    feed states it, else at the feed's first usable row. A standalone indicator has no
    after-run check, so it used to give lines from the wrong bars silently; MTLStrategy
    traded the whole run before its after-run check refused it."""
    from mtl_bt.data.synthetic import garch_bars
    from mtl_bt.errors import DataError
    from mtl_bt.strategies.mtl import MTLStrategy

    hourly = {  # inside the last test window, so only the bar size is wrong
        s: garch_bars(400, seed=i, symbol=s, freq="1h", start="2011-03-01")
        for i, s in enumerate(frames)
    }
    seen: list[float] = []

    class Mine(bt.Strategy):
        def __init__(self) -> None:
            self.preds = [MTLPredictions(d, model=trained[0]) for d in self.datas]

        def next(self) -> None:
            seen.extend(p.lines[0][0] for p in self.preds if np.isfinite(p.lines[0][0]))

    class Trader(MTLStrategy):
        def order_targets(self, targets) -> None:
            seen.append(len(targets))

    def go(strategy, **params):
        cerebro = bt.Cerebro(stdstats=False, preload=False)
        for s, f in hourly.items():
            extra = dict(timeframe=bt.TimeFrame.Minutes, compression=60) if stated else {}
            cerebro.adddata(bt.feeds.PandasData(dataname=f, **extra), name=s)
        cerebro.addstrategy(strategy, **params)
        return cerebro.run()[0]

    for strategy, params, escape in (
        (Mine, {}, r"MTLPredictions\(data, model=\.\.\., any_bar_size=True\)"),
        (Trader, {"model": trained[0]}, r"MTLStrategy\(any_bar_size=True\)"),
    ):
        seen.clear()
        with pytest.raises(
            DataError,
            match=r"feed 'AAA' has 1h bars but the model was "
            r"trained on 1d bars.*" + escape,
        ) as err:
            go(strategy, **params)
        assert "\n" not in str(err.value)
        assert seen == []  # no prediction read, no order placed
    # the escape hatch: lines from those bars anyway
    seen.clear()
    go(Trader, model=trained[0], any_bar_size=True, calendar="24/7")
    assert seen
