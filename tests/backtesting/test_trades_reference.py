"""Closed trades, exposure and turnover checked against independent calculations.

Trades: Backtrader's own trade book (``bt.analyzers.TradeAnalyzer`` and the ``Trade``
objects it is notified of) attached to the very cerebro run that produced our record.
Exposure and turnover: recomputed from the written orders.csv / returns.csv plus the
portfolio value series, with the definitions of docs/backtesting.md, not with our code.
"""

from __future__ import annotations

import json

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from mtl_bt import registry
from mtl_bt.backtesting.analyzers import PortfolioAnalyzer
from mtl_bt.backtesting.runner import (
    TRADE_COLUMNS,
    make_cerebro,
    run_backtest,
    strategy_params,
    write_outputs,
)
from mtl_bt.config import BacktestConfig
from mtl_bt.strategies import MTLStrategy

CFG = BacktestConfig(rebalance="bar")  # every-bar decisions: many trades, flips included


class ClosedTrades(bt.Analyzer):
    """Every trade Backtrader itself reports as closed (its own bookkeeping)."""

    def start(self) -> None:
        self.closed: list[dict] = []

    def notify_trade(self, trade: bt.Trade) -> None:
        if trade.isclosed:
            self.closed.append(
                {
                    "symbol": trade.data._name,
                    "entry_time": trade.dtopen,
                    "exit_time": trade.dtclose,
                    "entry_price": trade.price,
                    "pnl": trade.pnl,
                    "pnl_net": trade.pnlcomm,
                    "commission": trade.commission,
                }
            )

    def get_analysis(self) -> list[dict]:
        return self.closed


@pytest.fixture(scope="module")
def same_run(frames, predictors):
    """One cerebro built like ``run_backtest`` builds it (same public helper, same strategy
    parameters), with our PortfolioAnalyzer and Backtrader's TradeAnalyzer side by side."""
    cfg = CFG
    cerebro = make_cerebro(frames, cfg)
    rule = registry.create("signal", cfg.signal, **cfg.signal_options)
    cerebro.addstrategy(MTLStrategy, **strategy_params(cfg, predictors, rule))
    cerebro.addanalyzer(PortfolioAnalyzer, _name="portfolio")
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="ta")
    cerebro.addanalyzer(ClosedTrades, _name="closed")
    strat = cerebro.run()[0]
    return strat, run_backtest(frames, predictors, cfg)


def test_the_reference_run_is_the_runners_run(same_run):
    strat, res = same_run
    rec = strat.analyzers.portfolio.get_analysis()
    ours = pd.DataFrame(rec["trades"], columns=TRADE_COLUMNS)
    assert len(ours) == len(res.trades) > 20
    cols = ["pnl", "pnl_net", "commission", "entry_price", "exit_price", "size"]
    np.testing.assert_array_equal(ours[cols].to_numpy(), res.trades[cols].to_numpy())
    assert [o["size"] for o in rec["orders"]] == res.orders["size"].tolist()


def test_closed_trades_match_backtraders_trade_analyzer(same_run):
    strat, res = same_run
    trades = res.trades
    ta = strat.analyzers.ta.get_analysis()
    assert ta.total.closed == len(trades) == res.metrics["num_trades"]
    assert ta.pnl.gross.total == pytest.approx(trades["pnl"].sum(), rel=1e-9)
    assert ta.pnl.net.total == pytest.approx(trades["pnl_net"].sum(), rel=1e-9)
    # TradeAnalyzer counts pnl_net >= 0 as won; no trade is exactly 0 here
    assert not (trades["pnl_net"] == 0).any()
    assert ta.won.total == int((trades["pnl_net"] > 0).sum())
    assert ta.lost.total == int((trades["pnl_net"] < 0).sum())
    assert ta.won.total > 0 and ta.lost.total > 0
    assert res.metrics["win_rate"] == pytest.approx(ta.won.total / ta.total.closed, rel=1e-12)
    assert res.metrics["profit_factor"] == pytest.approx(
        ta.won.pnl.total / -ta.lost.pnl.total, rel=1e-9
    )
    assert ta.long.total > 0 and ta.short.total > 0  # both sides traded


def test_each_closed_trade_matches_backtraders_own_trade(same_run, frames):
    strat, res = same_run
    ref = pd.DataFrame(strat.analyzers.closed.get_analysis())
    for col in ("entry_time", "exit_time"):
        ref[col] = [pd.Timestamp(bt.num2date(d)).tz_localize("UTC") for d in ref[col]]
    keys = ["symbol", "exit_time", "entry_time"]
    ref = ref.sort_values(keys, kind="stable").reset_index(drop=True)
    ours = res.trades.sort_values(keys, kind="stable").reset_index(drop=True)
    assert len(ref) == len(ours)
    assert ref["symbol"].tolist() == ours["symbol"].tolist()
    assert (ref["entry_time"] == ours["entry_time"]).all()
    assert (ref["exit_time"] == ours["exit_time"]).all()
    for col in ("entry_price", "pnl", "pnl_net", "commission"):
        np.testing.assert_allclose(ours[col], ref[col], rtol=1e-9, atol=1e-9, err_msg=col)
    # position flips happened (a trade exits on the bar the next one enters) and are split
    # into two trades by both books
    flips = 0
    for _, t in ours.groupby("symbol"):
        t = t.sort_values("entry_time")
        same_bar = t["entry_time"].to_numpy()[1:] == t["exit_time"].to_numpy()[:-1]
        opposite = np.sign(t["size"].to_numpy()[1:]) != np.sign(t["size"].to_numpy()[:-1])
        flips += int((same_bar & opposite).sum())
    assert flips > 0


def test_exposure_and_turnover_recomputed_from_the_written_files(same_run, tmp_path):
    _, res = same_run
    paths = write_outputs(res, tmp_path)
    doc = json.loads(paths["metrics"].read_text())
    ppy = doc["periods_per_year"]
    returns = pd.read_csv(paths["returns"])
    bars = pd.DatetimeIndex(pd.to_datetime(returns["datetime"], utc=True))
    r = returns["portfolio_return"].to_numpy()
    orders = pd.read_csv(paths["orders"])
    orders["datetime"] = pd.to_datetime(orders["datetime"], utc=True)
    fills = orders[orders["status"] == "completed"]
    assert len(fills) > 20
    assert fills["datetime"].min() > bars[0]  # nothing fills on or before the first decision

    # the value series: starting cash compounded by returns.csv is the broker value
    value = CFG.cash * np.cumprod(1.0 + r)
    np.testing.assert_allclose(value, res.equity.to_numpy(), rtol=1e-10)
    prev = np.concatenate([[CFG.cash], value[:-1]])

    # exposure: fraction of bars with any open position (positions from the fills so far)
    signed = np.where(fills["side"] == "buy", 1.0, -1.0) * fills["size"].to_numpy()
    open_any = np.zeros(len(bars), dtype=bool)
    for sym in fills["symbol"].unique():
        mine = (fills["symbol"] == sym).to_numpy()
        pos = np.cumsum(signed[mine])
        scale = np.maximum.accumulate(np.abs(signed[mine]))
        pos[np.abs(pos) <= 1e-9 * scale] = 0.0
        at = np.searchsorted(fills["datetime"][mine].to_numpy(), bars.to_numpy(), side="right")
        held = np.concatenate([[0.0], pos])[at]
        open_any |= held != 0.0
    exposure = open_any.mean()
    assert 0.0 < exposure < 1.0
    assert doc["portfolio"]["exposure"] == pytest.approx(exposure, rel=1e-12)

    # turnover: sum_t(traded value_t / V_{t-1}) / n * P
    traded = (fills["size"] * fills["price"]).groupby(fills["datetime"]).sum()
    traded = traded.reindex(bars, fill_value=0.0).to_numpy()
    assert traded.sum() == pytest.approx((fills["size"] * fills["price"]).sum(), rel=1e-12)
    turnover = (traded / prev).sum() / len(bars) * ppy
    assert doc["portfolio"]["turnover"] == pytest.approx(turnover, rel=1e-9)
    assert doc["portfolio"]["num_trades"] == len(pd.read_csv(paths["trades"]))
