"""MTLStrategy portfolio behaviour, baselines, analyzer identities, bad input (real checkpoints)."""

from __future__ import annotations

import re
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mtl_bt.backtesting import frame_feed
from mtl_bt.backtesting.runner import run_backtest, run_buy_and_hold
from mtl_bt.config import BacktestConfig
from mtl_bt.data.synthetic import garch_bars
from mtl_bt.errors import CheckpointError, DataError, PluginError
from mtl_bt.strategies import MTLStrategy

MEMORYLESS = {"hysteresis": False, "margin": 0.0}  # the pre-cost-aware rule: trades often

DOCS = Path(__file__).resolve().parents[2] / "docs" / "backtesting.md"


def test_docs_plain_backtrader_snippet_runs(frames, trained):
    text = DOCS.read_text()
    block = re.search(r"<!-- snippet: plain-backtrader -->\s*```python\n(.*?)```", text, re.S)
    assert block, "docs/backtesting.md lacks the plain Backtrader snippet"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 12
    namespace = {"frames": frames, "checkpoint": trained[2].checkpoints[-1]}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - our own docs
    strat = namespace["result"][0]
    assert isinstance(strat, MTLStrategy) and strat.decisions > 10
    assert namespace["cerebro"].broker.getvalue() != 100_000.0  # it traded


def test_pandasdata_feeds_give_the_same_orders(frames, predictors, live_run):
    """The strategy also runs on stock PandasData feeds (e.g. for the speed benchmark)."""
    from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
    from mtl_bt.backtesting.runner import make_cerebro

    cerebro = make_cerebro({}, BacktestConfig())
    for s, f in frames.items():  # naive UTC index, capitalised columns: both allowed
        g = f.tz_localize(None).rename(columns=str.capitalize)
        cerebro.adddata(bt.feeds.PandasData(dataname=g), name=s)
    cerebro.addstrategy(MTLStrategy, predictor=predictors)
    cerebro.addanalyzer(PortfolioAnalyzer, _name="p")
    orders = cerebro.run()[0].analyzers.p.get_analysis()["orders"]
    ours = live_run.orders
    assert len(orders) == len(ours)
    assert [o["side"] for o in orders] == ours["side"].tolist()
    np.testing.assert_allclose([o["size"] for o in orders], ours["size"], rtol=1e-9)


def test_portfolio_caps_costs_and_next_open_fills(frames, live_run):
    res = live_run
    # every fill is at the next bar's open (+/- slippage, capped to the bar's range)
    done = res.orders[res.orders["status"] == "completed"]
    assert len(done) > 20
    for _, o in done.iterrows():
        bar = frames[o["symbol"]].loc[o["datetime"]]
        slip = bar["open"] * (1.0005 if o["side"] == "buy" else 0.9995)
        expected = min(max(slip, bar["low"]), bar["high"])
        assert o["price"] == pytest.approx(expected, rel=1e-12)
        assert o["commission"] == pytest.approx(0.001 * o["size"] * o["price"], rel=1e-9)
    # gross exposure stays near the cap (sized at the close, valued at later closes)
    pos = res.strategy.analyzers.portfolio.get_analysis()
    gross = pos["gross"]
    assert gross.max() < 1.2
    assert (np.abs(pos["positions"]) / pos["value"][:, None]).max() < 0.6
    assert res.metrics["exposure"] > 0 and res.metrics["turnover"] > 0


def test_contributions_sum_to_portfolio_return_and_pnl_identity(live_run):
    res = live_run
    np.testing.assert_allclose(res.contributions.sum(axis=1), res.returns, rtol=1e-9, atol=1e-12)
    rec = res.strategy.analyzers.portfolio.get_analysis()
    total_pnl = sum(m["pnl"] for m in res.per_asset.values())
    assert total_pnl == pytest.approx(rec["value"][-1] - rec["start_value"], rel=1e-9)
    # returns are the broker value path; the metric is computed on exactly that series
    from mtl_bt.metrics import performance as perf

    assert res.metrics["sharpe"] == perf.sharpe_ratio(res.returns.to_numpy(), res.periods_per_year)
    assert res.periods_per_year == 365.0  # daily 24/7 synthetic bars
    # closed trades: pnl_net = pnl - commission, and sum of all commissions is bounded
    t = res.trades
    np.testing.assert_allclose(t["pnl_net"], t["pnl"] - t["commission"], rtol=1e-12)
    assert (t["exit_time"] >= t["entry_time"]).all()


def test_buy_and_hold_baseline_matches_hand_computation(frames):
    cfg = BacktestConfig(commission=0.001, slippage=0.0)
    res = run_buy_and_hold(frames, cfg)
    budget = cfg.cash * 0.99 / 2
    cash, value = cfg.cash, 0.0
    for f in frames.values():
        size = budget / f["close"].iloc[0]
        cost = size * f["open"].iloc[1]
        cash -= cost * 1.001
        value += size * f["close"].iloc[-1]
    assert res.metrics["final_value"] == pytest.approx(cash + value, rel=1e-12)
    assert len(res.returns) == len(frames["AAA"])  # no warm-up
    assert res.metrics["num_trades"] == 0 and res.metrics["profit_factor"] is None


def test_return_only_baseline_trades_with_the_fallback_sizing(frames, return_only):
    res = run_backtest(frames, return_only, BacktestConfig(signal_options=MEMORYLESS))
    assert res.strategy.used_tasks == ["return@1"]
    assert res.metrics["num_trades"] > 5


def test_horizon_rebalance_holds_positions_for_h_bars(frames, predictors):
    cfg = BacktestConfig(signal_options={"horizon": 3, **MEMORYLESS}, rebalance="horizon")
    res = run_backtest(frames, predictors, cfg)
    assert res.strategy.hold == 3
    for sym, f in frames.items():
        o = res.orders[(res.orders["symbol"] == sym) & (res.orders["status"] == "completed")]
        pos = f.index.get_indexer(o["datetime"])
        signed = np.where(o["side"] == "buy", 1, -1) * o["size"].to_numpy()
        held = np.cumsum(signed)
        for i in range(len(pos) - 1):
            if abs(held[i]) > 1e-9:  # a position was (re)set here: held for >= 3 bars
                assert pos[i + 1] - pos[i] >= 3
    bar = run_backtest(
        frames, predictors, BacktestConfig(rebalance="bar", signal_options=MEMORYLESS)
    )
    assert len(bar.orders) > len(res.orders)


def test_gap_up_buys_fit_the_cash_at_the_fill_and_refusals_are_recorded(frames, predictors):
    """Buys are sized to fit the cash at the close; a 6% gap up at every open makes the
    fully invested book's buys unaffordable at the fill. MTLStrategy's buys of one bar are
    scaled together to the cash there (mtl_bt.backtesting.fills): none is refused. Without
    that (a strategy submitting its own buys), the broker refuses and the analyzer records."""
    from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
    from mtl_bt.backtesting.runner import make_cerebro

    gapped = {}
    for s_, f in frames.items():
        g = f.copy()
        g["open"] = g["open"] * 1.06
        g["high"] = np.maximum(g["high"], g["open"])
        g.attrs = dict(f.attrs)
        gapped[s_] = g
    cfg = BacktestConfig(
        allow_short=False,
        rebalance="bar",
        signal_options={"target_vol": 50.0, "threshold": 0.0, "use_direction": False},
    )
    res = run_backtest(gapped, predictors, cfg)
    assert len(res.orders) > 20
    assert (res.orders["status"] == "completed").all()
    assert res.metrics["rejected_orders"] == 0

    class OwnBuys(MTLStrategy):  # the same sizes, submitted one by one (no fitted group)
        def start(self):
            super().start()
            self._buy_groups.uninstall()
            self._buy_groups = None

    cerebro = make_cerebro(gapped, cfg)
    cls, params = MTLStrategy.from_config(cfg, predictors)
    cerebro.addstrategy(OwnBuys, **params)
    cerebro.addanalyzer(PortfolioAnalyzer, _name="p")
    orders = pd.DataFrame(cerebro.run()[0].analyzers.p.get_analysis()["orders"])
    bad = orders[orders["status"] != "completed"]
    assert len(bad) > 0 and set(bad["status"]) <= {"margin", "rejected"}
    assert (bad["side"] == "buy").all()


class NaNFirstAsset:
    """A real predictor whose predictions for asset id 0 are missing (NaN): on every other
    per-bar call (batches of <= 2 rows), or ``always``."""

    def __init__(self, inner, every=2, always=False):
        self.inner, self.calls, self.every, self.always = inner, 0, every, always

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, x, asset_ids=None):
        out = self.inner.predict(x, asset_ids)
        if len(x) <= 2:
            self.calls += 1
        if self.always or (len(x) <= 2 and self.calls % self.every):
            for v in out.values():
                v[np.asarray(asset_ids) == 0] = np.nan
        return out


def test_missing_prediction_means_no_trade_on_that_bar(frames, predictors):
    wrapped = [NaNFirstAsset(p) for p in predictors]
    res = run_backtest(frames, wrapped, BacktestConfig(rebalance="bar"), record=True)
    nan_bars = set()
    for dt, assets, preds in res.strategy.predictions_log:
        for j, a in enumerate(assets):
            if a == 0 and np.isnan(preds["return@1"][j]):
                nan_bars.add(dt)
    assert nan_bars
    from mtl_bt.backtesting.feeds import bt_datenums

    aaa = frames["AAA"]
    nums = bt_datenums(aaa.index)
    # an order created on bar t fills on bar t+1: no AAA fill may follow a NaN bar
    fills = res.orders[(res.orders["symbol"] == "AAA")]["datetime"]
    created = {nums[aaa.index.get_loc(t) - 1] for t in fills}
    assert not (created & nan_bars)
    assert len(fills) > 0


def test_bad_input_errors_before_the_run(frames, predictors):
    with pytest.raises(DataError, match="AAA: predictions are NaN|AAA: the model's predictions"):
        run_backtest(frames, [NaNFirstAsset(p, always=True) for p in predictors], BacktestConfig())
    zero = dict(frames)
    z = frames["BBB"].copy()
    z.iloc[300, z.columns.get_loc("open")] = 0.0
    zero["BBB"] = z
    with pytest.raises(DataError, match="BBB: open is 0.0"):
        run_backtest(zero, predictors, BacktestConfig())
    short = dict(frames)
    short["BBB"] = frames["BBB"].iloc[:10]
    with pytest.raises(DataError, match=r"feed .BBB.: 10 bars, but the model needs \d+"):
        run_backtest(short, predictors, BacktestConfig())
    stranger = dict(frames)
    stranger["ZZZ"] = garch_bars(520, seed=9, symbol="ZZZ")
    with pytest.raises(CheckpointError, match="ZZZ"):
        run_backtest(stranger, predictors, BacktestConfig())
    with pytest.raises(PluginError, match="return@7"):
        run_backtest(frames, predictors, BacktestConfig(signal_options={"horizon": 7}))


def test_stale_asset_is_not_traded(predictors):
    """A weekday-only asset next to a 24/7 one: on a weekend step the stock's feed did not
    move, so it is neither counted, nor decided, nor ordered on its stale Friday bar."""
    from mtl_bt.backtesting.feeds import bt_datenums

    crypto = garch_bars(520, seed=1, freq="1D", symbol="AAA")
    stock = garch_bars(372, seed=2, freq="B", symbol="BBB")
    res = run_backtest(
        {"AAA": crypto, "BBB": stock}, predictors, BacktestConfig(rebalance="bar"), record=True
    )
    strat = res.strategy
    b = strat.symbols.index("BBB")
    # the per-asset bar counter (which drives the horizon holding) counts the stock's own bars
    assert strat._bars[b] == len(stock) and strat._bars[1 - b] == len(crypto)
    stock_nums = set(bt_datenums(stock.index).tolist())
    # the model is asked about the stock only on steps where the stock has a new bar
    # (the log's time is the strategy clock, which moves on weekends with the crypto feed)
    asked = [dt for dt, assets, _ in strat.predictions_log if b in assets]
    assert len(asked) > 50
    assert set(asked) <= stock_nums
    weekend = [dt for dt, _, _ in strat.predictions_log if dt not in stock_nums]
    assert weekend, "no weekend step was decided: the test would be vacuous"
    # every stock order was created on a stock bar, and at most one per bar (a stale re-decision
    # on Saturday would repeat Friday's still pending order with Friday's creation time)
    created = [o.created.dt for o in strat.broker.orders if o.data._name == "BBB"]
    assert len(created) > 10
    stock_index = set(stock.index)
    for dt in created:
        assert pd.Timestamp(bt.num2date(dt)).tz_localize("UTC") in stock_index
    assert len(created) == len(set(created))
    o = res.orders[(res.orders["symbol"] == "BBB") & (res.orders["status"] == "completed")]
    assert len(o) > 0
    assert set(o["datetime"]) <= set(stock.index)
    assert (pd.DatetimeIndex(o["datetime"]).day_of_week < 5).all()
    assert res.periods_per_year == 365.0  # auto: weekend bars exist in the portfolio


@pytest.mark.parametrize("mode", ["live", "precomputed"])
def test_no_decision_or_order_before_the_features_are_complete(frames, predictors, mode):
    """The data starts inside fold 0's test window, so the model is usable from the first bar
    but the features are not: the warm-up alone must hold each asset back (BBB starts later)."""
    from mtl_bt.backtesting.feeds import bt_datenums

    test_start = pd.Timestamp(predictors[0].fold["test_start"])
    starts = {"AAA": test_start, "BBB": test_start + pd.Timedelta(days=15)}
    data = {s: f[f.index >= starts[s]] for s, f in frames.items()}
    first_ok = {}
    for s, f in data.items():
        assert f.index[0] > pd.Timestamp(predictors[0].fold["train_end"])  # model usable
        complete = np.isfinite(predictors[0].features(f).to_numpy()).all(axis=1)
        row = int(np.argmax(complete))
        assert complete[row] and row > 10  # a real warm-up inside the usable window
        first_ok[s] = float(bt_datenums(f.index[row : row + 1])[0])
    res = run_backtest(data, predictors, BacktestConfig(mode=mode, rebalance="bar"), record=True)
    strat = res.strategy

    # the model is never asked about an incomplete feature row, and is asked as soon as it can
    asked: dict[str, list[float]] = {s: [] for s in data}
    for dt, assets, _ in strat.predictions_log:
        for a in assets:
            asked[strat.symbols[a]].append(dt)
    for s in data:
        assert asked[s] and min(asked[s]) == first_ok[s], s
    assert strat.first_decision == min(first_ok.values())
    # no order exists before an asset's first complete bar; its fills come strictly after it
    created = {s: [] for s in data}
    for o in strat.broker.orders:
        created[o.data._name].append(o.created.dt)
    for s in data:
        assert created[s] and min(created[s]) >= first_ok[s], s
        fills = res.orders.loc[res.orders["symbol"] == s, "datetime"]
        assert fills.min() > pd.Timestamp(bt.num2date(first_ok[s])).tz_localize("UTC"), s
    # the metrics start at the first decision, not on the warm-up bars
    assert res.returns.index[0] == pd.Timestamp(bt.num2date(strat.first_decision)).tz_localize(
        "UTC"
    )


def test_plain_backtrader_with_explicit_feed(frames, predictors):
    cerebro = bt.Cerebro(stdstats=False)
    for s, f in frames.items():
        cerebro.adddata(frame_feed(f), name=s)
    cerebro.addstrategy(MTLStrategy, model=predictors[0], mode="precomputed")  # alias
    strat = cerebro.run()[0]
    assert strat.decisions > 0
    assert {k for _, k in strat.used_folds} == {0}
